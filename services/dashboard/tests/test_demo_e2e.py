"""End to end: `python -m coinpulse_platform.demo` on the bundled simulators, then the dashboard in headless Chromium
against the running demo. The bundled recording's markets must appear with live candles, mentions and posts; a
screenshot goes to .coinpulse/screenshots/demo.png. The demo's processes are stopped afterwards."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
import websockets
from coinpulse_common.paths import repo_root, state_dir
from coinpulse_dashboard.browser import CANVAS_PIXELS, Page
from coinpulse_dashboard.browser import chromium as browser_chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _recording_markets() -> set[str]:
    markets = set()
    path = repo_root() / "services" / "sim-upbit" / "data" / "default.jsonl.gz"
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f):
            msg = json.loads(line)["msg"]
            code = msg.get("code") or msg.get("cd")
            if code:
                markets.add(code)
            if i > 5000:
                break
    return markets


@pytest.fixture(scope="module")
def demo(stack):
    from coinpulse_platform import services

    started = datetime.now(UTC)
    r = subprocess.run([sys.executable, "-m", "coinpulse_platform.demo", "420"], capture_output=True, text=True,
                       timeout=600)
    try:
        assert r.returncode == 0, f"demo failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        assert "http://127.0.0.1:28000/" in r.stdout or f":{stack.dashboard_port}/" in r.stdout
        # the summary says what this run added, next to what earlier runs on the same state left
        this_run = next(line for line in r.stdout.splitlines() if line.strip().startswith("this run"))
        assert int(this_run.split()[2]) > 0, this_run
        yield started
    finally:
        services.stop_all()


async def test_demo_reaches_postgres_and_the_dashboard_shows_it(stack, demo):
    markets = _recording_markets()
    assert len(markets) >= 10
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as c:
        in_pg = {m for (m,) in c.execute("SELECT DISTINCT market FROM gold.candles WHERE interval = '1m'")}
        n_mentions = c.execute("SELECT count(*) FROM gold.mentions_1m").fetchone()[0]
    assert in_pg and in_pg <= markets, in_pg - markets
    assert n_mentions > 0

    url = f"http://{stack.host}:{stack.dashboard_port}"
    market = sorted(in_pg)[0]
    with browser_chromium() as endpoint:
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"{endpoint}/json/list")).json()
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with websockets.connect(ws_url, max_size=64 << 20) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            await page.send("Emulation.setDeviceMetricsOverride", width=1600, height=1200, deviceScaleFactor=1,
                            mobile=False)
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
            shot = await page.send("Page.captureScreenshot", format="png")
    out = state_dir() / "screenshots" / "demo.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    assert out.stat().st_size > 20_000


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
