"""End to end: `python -m coinpulse_platform.demo` on the simulators of one coupled world (scenario `demo`), then the
dashboard in headless Chromium against the running demo. The world's markets must appear with live candles,
mentions and posts; a screenshot goes to .coinpulse/screenshots/demo.png. History from the start: the first screen
has 12 h of 1-minute candles for the coupled markets (every minute: ingest fetched the past over REST before it
subscribed, and the candle agent built those minutes, none dropped as late), their mentions on the same time axis
(the crawled gallery history, none dropped as late) and a filled link summary. The demo refreshed the marts before
its summary (which says when the first screen was ready), so the marts have rows of this run and the flow box lists
that run; every health box of the dashboard's health JSON is green. The demo's processes are stopped afterwards."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from coinpulse_common.paths import state_dir
from coinpulse_dashboard.queries import link_sentence
from coinpulse_flows.settings import FlowSettings
from coinpulse_platform import demo as driver
from coinpulse_testing.browser import CANVAS_PIXELS, open_page
from coinpulse_testing.browser import chromium as browser_chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]


FRESH = {"state": True}  # whether the demo started on a state without candles (set by the `demo` fixture)


def _world_markets() -> set[str]:
    from coinpulse_platform import demo
    from coinpulse_simworld import load_scenario

    return set(load_scenario(demo.SCENARIO).codes)


@pytest.fixture(scope="module")
def demo(stack):
    from coinpulse_platform import services

    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        had = bool(c.execute("SELECT to_regclass('gold.candles')").fetchone()[0]) and \
            c.execute("SELECT EXISTS (SELECT 1 FROM gold.candles)").fetchone()[0]
    FRESH["state"] = not had
    started = datetime.now(UTC)
    r = subprocess.run([sys.executable, "-m", "coinpulse_platform.demo", "420"], capture_output=True, text=True,
                       timeout=600)
    try:
        assert r.returncode == 0, f"demo failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        assert "http://127.0.0.1:28000/" in r.stdout or f":{stack.dashboard_port}/" in r.stdout
        # the summary says what this run added, next to what earlier runs on the same state left
        this_run = next(line for line in r.stdout.splitlines() if line.strip().startswith("this run"))
        assert int(this_run.split()[2]) > 0, this_run
        ready = next((line for line in r.stdout.splitlines() if "first screen ready after" in line), None)
        assert ready is not None, f"no 'first screen ready after N s' in the summary:\n{r.stdout[-3000:]}"
        assert 0 < int(ready.split("ready after")[1].split()[0]) <= 600, ready
        yield started
    finally:
        services.stop_all()


async def test_demo_reaches_postgres_and_the_dashboard_shows_it(stack, demo):
    markets = _world_markets()
    assert len(markets) >= 10
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        in_pg = {m for (m,) in c.execute("SELECT DISTINCT market FROM gold.candles WHERE interval = '1m'")}
        n_mentions = c.execute("SELECT count(*) FROM gold.mentions_1m").fetchone()[0]
    assert in_pg and in_pg <= markets, in_pg - markets
    assert n_mentions > 0

    # the first screen of a coupled market of the world (the one with most mention spikes): its link is on it
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        spikes = dict(c.execute("SELECT market, count(*) FROM marts.mention_spikes WHERE market = ANY(%s) GROUP BY 1",
                                (sorted(driver.COUPLED),)).fetchall())
        assert spikes, f"no mention spike of a coupled market {sorted(driver.COUPLED)} in marts.mention_spikes"
        market = max(sorted(spikes), key=lambda m: spikes[m])
        best_lag, verdict = c.execute("SELECT best_lag, verdict FROM marts.link_summary WHERE market = %s AND "
                                      "metric = 'mentions_absret'", (market,)).fetchone()
    words = link_sentence({"verdict": verdict, "best_lag": best_lag}, 0)["sentence"]
    url = f"http://{stack.host}:{stack.dashboard_port}"
    with browser_chromium() as endpoint:
        async with open_page(endpoint, 1600, 1200) as page:
            await page.send("Page.navigate", url=f"{url}/#{market}")
            await page.until("document.body && document.body.dataset.ready === '1' && "
                             "window.coinpulse.bars.length > 0", 60, "the first render with candles")
            px = await page.until(f"(() => {{ const p = {CANVAS_PIXELS}; return (p.up + p.down) > 20 && p; }})()",
                                  20, "candles drawn on the canvas")
            assert px["canvases"] >= 2
            top = await page.until("(() => { const r = [...document.querySelectorAll('#top-table tbody tr')]"
                                   ".map(r => r.dataset.market); return r.length > 0 && r; })()", 20,
                                   "the top-10 table")
            assert set(top) <= markets and len(top) == min(10, len(in_pg))
            await page.until("document.querySelectorAll('#health .hbox').length >= 4", 60, "the health panel")
            health_text = await page.js("document.getElementById('health').textContent")
            # the demo ran the marts deployment before its summary: the first screen lists that run
            assert "no flow runs yet" not in health_text and "gold-marts" in health_text, health_text
            # the link on the first screen: spike markers on the candles, the lead–lag bars (every lag, the verdict in
            # words, as the marts say), the ranking of coins by their link
            n_lags = await page.until("document.querySelectorAll('#lag-chart rect.lagbar').length", 60,
                                      "the lead–lag bars")
            assert n_lags == 2 * FlowSettings().link_max_lag_minutes + 1
            assert await page.js("document.getElementById('link-sentence').textContent") == words
            assert await page.until("window.coinpulse.spikeMarkers", 60, f"the spike markers of {market}") > 0
            ranked = await page.until("(() => { const r = [...document.querySelectorAll('#link-table tbody "
                                      "tr[data-market]')].map(r => r.dataset.market); return r.length > 0 && r; })()",
                                      60, "the ranking of links")
            assert market in ranked
            shot = await page.send("Page.captureScreenshot", format="png")
    out = state_dir() / "screenshots" / "demo.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 20_000


def _not_green(h: dict) -> list[str]:
    """What a person would see as not green in the dashboard's health JSON (empty: every box is green)."""
    bad = []
    db = h["database"]
    if db["state"] != "up":
        bad.append(f"database: {db.get('error')}")
    else:
        if db["ingest"]["newest_candle_age_s"] is None or db["mentions"]["newest_mention_age_s"] is None:
            bad.append(f"ingest/mentions: no candle or mention yet: {db['ingest']} {db['mentions']}")
        if not db["crawl"]["posts_24h"]:
            bad.append(f"crawl: no post in 24 h: {db['crawl']}")
    c = h["connect"]
    if c["state"] == "down":
        bad.append(f"connect: {c.get('error')}")
    else:
        # the project's connectors must all run; connectors of other tests on a shared stack (other prefixes)
        # only count in the box, as the page shows them
        own = [x for x in c["connectors"] if x["name"].startswith("coinpulse-")]
        if not own:
            bad.append("connect: no coinpulse- connector")
        bad += [f"connect: {x}" for x in own
                if x["state"] != "RUNNING" or not x["tasks"] or any(t != "RUNNING" for t in x["tasks"])]
    f = h["prefect"]
    if f["state"] != "up":
        bad.append(f"prefect: {f['state']}: {f.get('error')}")
    elif not any(r["flow"] == "gold-marts" and r["state"] == "COMPLETED" for r in f["runs"]):
        bad.append(f"prefect: no completed gold-marts run among {f['runs']}")
    s = h["services"]
    if s["state"] != "up":
        bad.append(f"services: {s.get('error')} {s.get('services')}")
    elif {x["name"] for x in s["services"]} != {"ingest-upbit", "crawl-dc", "candle-agent", "sink"}:
        bad.append(f"services: probes {s['services']}")
    return bad


def test_every_health_box_is_green_and_the_marts_have_rows_of_this_run(stack, demo):
    url = f"http://{stack.host}:{stack.dashboard_port}/api/health"
    deadline = time.monotonic() + 120  # the dashboard refreshes its snapshot every COINPULSE_DASHBOARD_HEALTH_S
    while True:
        h = httpx.get(url, timeout=15).raise_for_status().json()
        bad = _not_green(h)
        if not bad:
            break
        assert time.monotonic() < deadline, "health boxes not green 120 s after the demo:\n" + "\n".join(bad)
        time.sleep(1)  # polling the dashboard's health snapshot (not synchronisation by sleeping)
    candle = next(x for x in h["services"]["services"] if x["name"] == "candle-agent")
    assert candle["detail"]["ok"] is True and candle["detail"]["assigned"], candle
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        # rows the demo's own refresh (before its summary) wrote: as_of is the run's time
        top = c.execute("SELECT count(*) FROM marts.top_markets WHERE as_of >= %s", (demo,)).fetchone()[0]
        link = c.execute("SELECT count(*), count(*) FILTER (WHERE close IS NOT NULL) FROM marts.price_community "
                         "WHERE as_of >= %s", (demo,)).fetchone()
    assert top > 0, "marts.top_markets has no row refreshed since the demo started"
    assert link[0] > 0 and link[1] > 0, f"marts.price_community rows since the demo started: {link}"


def _agent_counter(text: str, name: str) -> float:
    """A counter of the candle agent's /metrics (absent: never incremented)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_first_screen_has_12_hours_of_candles_the_mentions_on_the_same_axis_and_the_link(stack, demo):
    from coinpulse_candle_agent.settings import CandleSettings

    start = demo.replace(second=0, microsecond=0)
    lo, hi = start - timedelta(hours=driver.HISTORY_HOURS), start
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        candles = dict(c.execute(
            "SELECT market, count(DISTINCT bucket_start) FROM gold.candles WHERE interval = '1m' "
            "AND market = ANY(%s) AND bucket_start >= %s AND bucket_start < %s GROUP BY 1",
            (list(driver.COUPLED), lo, hi)).fetchall())
        m_lo, m_hi, m_minutes = c.execute(
            "SELECT min(bucket_start), max(bucket_start), count(DISTINCT bucket_start) FROM gold.mentions_1m "
            "WHERE market = ANY(%s) AND bucket_start >= %s AND bucket_start < %s",
            (list(driver.COUPLED), lo, hi)).fetchone()
        links = c.execute("SELECT market, verdict, n FROM marts.link_summary WHERE metric = 'mentions_absret' "
                          "AND as_of >= %s AND market = ANY(%s)", (demo, list(driver.COUPLED))).fetchall()
        n_links = c.execute("SELECT count(*) FROM marts.link_summary WHERE as_of >= %s", (demo,)).fetchone()[0]
        n_lags = c.execute("SELECT count(*) FROM marts.lead_lag WHERE as_of >= %s AND market = ANY(%s)",
                           (demo, list(driver.COUPLED))).fetchone()[0]
    # every minute of the 12 hours before the demo started: the world trades every minute of every market
    want = driver.HISTORY_HOURS * 60
    assert candles == dict.fromkeys(driver.COUPLED, want), f"1-minute candles in [{lo}, {hi}) (want {want}): {candles}"
    # the mentions lie on the candles' time axis: from hours back (the crawled history) to the last minutes
    assert m_lo is not None, f"no mention of {driver.COUPLED} in [{lo}, {hi})"
    assert m_lo <= hi - timedelta(hours=driver.DC_HISTORY_HOURS - 0.5) and m_hi >= hi - timedelta(minutes=10), \
        (m_lo, m_hi)
    assert m_minutes >= driver.DC_HISTORY_HOURS * 60 / 2, f"only {m_minutes} minutes with mentions of {driver.COUPLED}"
    # the lead–lag panel is filled: every lag of each coupled market, and a summary on enough minute pairs
    assert n_links > 0 and n_lags > 0, (n_links, n_lags)
    assert {m for m, _, _ in links} == set(driver.COUPLED), links
    assert all(v != "insufficient_data" and n >= 120 for _, v, n in links), links
    # nothing of the history was dropped as late: it came oldest first, before the live feed (trades), and the
    # agent's mention lateness covers the crawled history (posts and comments are two topics read independently)
    metrics = httpx.get(f"http://{stack.host}:{CandleSettings().candle_metrics_port}/metrics", timeout=10).text
    # On a fresh state the agent's counters say it directly. On a state an earlier demo left (CI runs `make demo`,
    # `make down`, then these tests), the restarted agent re-reads the trades after its last committed offset, which
    # its recovered tables already hold: it counts them late, and their candles are unchanged. There the complete
    # 720 minutes per coupled market above are the proof that nothing of the history was lost.
    if FRESH["state"]:
        assert _agent_counter(metrics, "coinpulse_candle_trades_late_total") == 0
        assert _agent_counter(metrics, "coinpulse_candle_mention_hits_late_total") == 0
        assert _agent_counter(metrics, "coinpulse_candle_trades_ok_total") > want * len(driver.COUPLED)


def test_flows_run_on_what_the_demo_wrote(stack, demo):
    """The gold marts and the backfill with their default settings, on the tables the demo's sinks filled: the marts
    rank the demo's markets, and rebuilding minutes from bronze gives the candles the stream produced."""
    from datetime import timedelta

    from coinpulse_flows import marts
    from coinpulse_flows.backfill import rebuild
    from coinpulse_flows.settings import FlowSettings
    from coinpulse_platform import services

    s = FlowSettings()
    # this run's minutes: emitted since the demo started and traded since then (on a state an earlier demo left, the
    # restarted agent also closes that run's last open minute now, hours or minutes before this run's first)
    span = "SELECT min(bucket_start), max(bucket_start) FROM gold.candles WHERE interval = '1m' " \
           "AND emitted_at >= %(t)s AND bucket_start >= date_trunc('minute', %(t)s::timestamptz)"
    deadline = time.monotonic() + 300
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        while True:  # the stream of this run must have closed a few whole minutes
            first, last = c.execute(span, {"t": demo}).fetchone()
            if first is not None and last - first >= timedelta(minutes=4):
                break
            assert time.monotonic() < deadline, f"candles emitted by this run: {first} .. {last}"
            time.sleep(2)  # polling PostgreSQL for the stream's progress (not synchronisation by sleeping)
    services.stop_all()  # the tables stop moving (the dashboard test above needed the services running)
    one_minute = "SELECT market, bucket_start, open, high, low, close, volume, trade_count FROM gold.candles " \
                 "WHERE interval = '1m' AND bucket_start >= %s AND bucket_start < %s ORDER BY 1, 2"
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        # the minutes this demo run's stream emitted (a reused stack also holds earlier runs), less the first
        # (partial) and the last (event time differs a little between partitions)
        first, last = c.execute(span, {"t": demo}).fetchone()
        n_markets = c.execute("SELECT count(DISTINCT market) FROM gold.candles WHERE interval = '1m'").fetchone()[0]
        lo, hi = first + timedelta(minutes=1), last - timedelta(minutes=1)
        streamed = c.execute(one_minute, (lo, hi)).fetchall()
    r = marts.refresh_marts(s, last + timedelta(minutes=1), publish=False)
    assert r.top_markets == min(10, n_markets)
    assert hi > lo and streamed, (first, last)
    b = rebuild(s, lo, hi, "kafka")
    assert b.trades > 0 and b.candles >= len(streamed)
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        rebuilt = c.execute(one_minute, (lo, hi)).fetchall()
        top = c.execute("SELECT count(*) FROM marts.top_markets").fetchone()[0]
    assert top == r.top_markets
    key = lambda row: (row[0], row[1])  # noqa: E731
    assert {key(x) for x in rebuilt} == {key(x) for x in streamed}
    for got, want in zip(rebuilt, streamed, strict=True):
        assert got[:2] == want[:2] and got[7] == want[7], (got, want)
        assert got[2:7] == pytest.approx(want[2:7], rel=1e-9), (got, want)
