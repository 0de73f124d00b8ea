"""`make demo`: the whole pipeline on the bundled simulators of one coupled world, then where to look.

Starts (idempotently; already running processes are kept) the two simulators on the shared simulated world of
`scenarios/demo.toml` (libs/simworld: the community follows the price in KRW-BTC and KRW-XRP, leads it in KRW-ETH
and KRW-SOL, the other markets are controls), with their past: sim-upbit serves `SIM_UPBIT_HISTORY_HOURS` of past
trades behind `/v1/trades/ticks`, sim-dcinside has `DC_HISTORY_HOURS` of the world's posts and comments on its list
pages. Then the sink (migrations + connectors + bronze S3 sink), ingest-upbit (which, with
COINPULSE_INGEST_HISTORY_HOURS, fetches `INGEST_HISTORY_HOURS` of every market's trades over REST and produces
them oldest first before it subscribes, so the candle agent builds those minutes), crawl-dc (whose first cycle
reads the simulator's history: `DC_BACKFILL_PAGES` list pages; politeness lowered for the local simulator only,
here in its environment), the candle agent (mention lateness `MENTION_LATENESS_MS`, covering that history), the
Prefect flow deployments and the dashboard, each detached with its log in `.coinpulse/logs/`.

Then waits until PostgreSQL has what the first screen shows: `HISTORY_HOURS` of 1-minute candles for the coupled
markets (every minute: the world trades every minute), their mentions from the crawled history up to now (the same
time axis), and candles and mentions emitted by this run; runs the gold-marts deployment once right away (through
Prefect's API: the served flows process executes it, as it would a scheduled run) so that the KPI, lead–lag and
link panels and the dashboard's flow box are filled on the first screen instead of after the first 5-minute
schedule; checks the link summary has rows; and prints a summary with the time from start to that first screen
(the goal: 120 s on a warm machine) and the link verdicts of the coupled markets. `make down` stops everything.

Everything it talks to follows the environment (`COINPULSE_*` ports, `COINPULSE_STATE_DIR`), so it also drives an
isolated stack (`coinpulse_platform.isolated.stack_env`).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from coinpulse_common.settings import PREFECT_AUTH_SECRET, Settings, get_settings, local_secret_path

from coinpulse_platform import services

DEMO_MARKETS = ""  # empty: ingest picks the top 15 by trade value from the simulator's REST API (the world's 15)
SCENARIO = "demo"  # libs/simworld/src/coinpulse_simworld/scenarios/demo.toml, loaded by both simulators
# demo.toml's coupled markets: community follows (BTC by 3 min, XRP by 2), community leads (ETH by 5, SOL by 4)
COUPLED = ("KRW-BTC", "KRW-XRP", "KRW-ETH", "KRW-SOL")
HISTORY_HOURS = 12  # hours of 1-minute candles the first screen shows
INGEST_HISTORY_HOURS = 12.5  # what ingest fetches on its first start (a little more than shown: whole minutes)
SIM_UPBIT_HISTORY_HOURS = 13.0  # what the simulator has: deeper than what ingest asks for
# the community's past on the gallery: 6 h of demo.toml is ~400 posts (one view page and one comment page each,
# ~800 requests); on this 2-core machine the crawler reads ~18 pages/s from the local simulator, so ~45 s. Six hours
# of overlap show each coupling at its lag (12 h of candles, mentions over the last 6, as the marts' grid has it)
DC_HISTORY_HOURS = 6.0
DC_BACKFILL_PAGES = 10  # list pages of 100 posts on the crawler's first cycle: more than the ~400 posts (the walk
# ends at the last page anyway)
# the crawler's first cycle emits DC_HISTORY_HOURS of posts and comments at once, into two topics the candle agent
# reads independently: the posts' event time can reach now before the comments of hours ago are read, and the
# default mention lateness (3 h) would drop those as late (measured: 35 % of the mentions with 6 h of history). The
# demo's agent keeps mention buckets open for the whole crawled history plus an hour (a setting, not a rule change)
MENTION_LATENESS_MS = int((DC_HISTORY_HOURS + 1) * 3_600_000)


def plan(s: Settings) -> list[tuple[str, str, list[str], dict[str, str]]]:
    sim_upbit = f"{s.host}:{s.sim_upbit_port}"
    return [
        ("sim-upbit", "coinpulse_sim_upbit",
         ["--scenario", SCENARIO, "--history-hours", str(SIM_UPBIT_HISTORY_HOURS), "--port", str(s.sim_upbit_port)],
         {}),
        ("sim-dcinside", "coinpulse_sim_dcinside",
         ["--scenario", SCENARIO, "--history-hours", str(DC_HISTORY_HOURS), "--galleries", "bitcoins_new1:normal",
          "--port", str(s.sim_dcinside_port)], {}),
        ("sink", "coinpulse_sink", ["run"], {}),
        ("ingest-upbit", "coinpulse_ingest_upbit", [],
         {"COINPULSE_INGEST_UPBIT_WS_URL": f"ws://{sim_upbit}/websocket/v1",
          "COINPULSE_INGEST_UPBIT_REST_URL": f"http://{sim_upbit}", "COINPULSE_INGEST_MARKETS": DEMO_MARKETS,
          "COINPULSE_INGEST_HISTORY_HOURS": str(INGEST_HISTORY_HOURS)}),
        # a demo wants the community's history within a minute from the local simulator: no delay between requests
        # and AutoThrottle capped at 0 (it would otherwise wait as long as each answer took); production keeps the
        # polite defaults (>= 1 s, one request in flight, every 5 minutes)
        ("crawl-dc", "coinpulse_crawl_dc", [],
         {"COINPULSE_DC_BASE_URL": f"http://{s.host}:{s.sim_dcinside_port}", "COINPULSE_DC_INTERVAL_S": "60",
          "COINPULSE_DC_GALLERIES": "bitcoins_new1:normal", "COINPULSE_DC_DOWNLOAD_DELAY_S": "0",
          "COINPULSE_DC_AUTOTHROTTLE_MAX_DELAY_S": "0", "COINPULSE_DC_BACKFILL_PAGES": str(DC_BACKFILL_PAGES)}),
        ("candle-agent", "coinpulse_candle_agent", [],
         {"COINPULSE_CANDLE_MENTION_LATENESS_MS": str(MENTION_LATENESS_MS)}),
        # the demo's marts run is created through the API right after the data arrives: poll for it every 2 s
        # (Prefect's default is 10 s)
        ("flows", "coinpulse_flows", ["serve"], {"PREFECT_RUNNER_POLL_FREQUENCY": "2"}),
        ("dashboard", "coinpulse_dashboard", [], {}),
    ]


def _count(s: Settings, sql: str, since: datetime) -> int:
    try:
        with psycopg.connect(s.pg_dsn(), connect_timeout=3) as c:
            return int(c.execute(sql, {"since": since} if "%(since)s" in sql else None).fetchone()[0])
    except psycopg.Error:
        return 0


HISTORY = """
SELECT market, count(*) FROM gold.candles
WHERE interval = '1m' AND market = ANY(%(coupled)s) AND bucket_start >= %(lo)s AND bucket_start < %(hi)s
GROUP BY market
"""
MENTION_SPAN = """
SELECT min(bucket_start), max(bucket_start), count(*) FROM gold.mentions_1m
WHERE market = ANY(%(coupled)s) AND bucket_start >= %(lo)s
"""


def history_status(s: Settings, since: datetime) -> dict:
    """What the first screen's history has so far: per coupled market the 1-minute candles of the `HISTORY_HOURS`
    whole minutes before `since`, and the span of the coupled markets' mentions over that range."""
    hi = since.replace(second=0, microsecond=0)
    args = {"coupled": list(COUPLED), "lo": hi - timedelta(hours=HISTORY_HOURS), "hi": hi}
    try:
        with psycopg.connect(s.pg_dsn(), connect_timeout=3) as c:
            candles = dict(c.execute(HISTORY, args).fetchall())
            m_lo, m_hi, m_n = c.execute(MENTION_SPAN, args).fetchone()
    except psycopg.Error:
        candles, m_lo, m_hi, m_n = {}, None, None, 0
    return {"candles": {m: int(candles.get(m, 0)) for m in COUPLED}, "minutes": HISTORY_HOURS * 60,
            "mentions_from": m_lo, "mentions_to": m_hi, "mentions": int(m_n or 0), "hi": hi}


def history_missing(h: dict) -> list[str]:
    """What the first screen still lacks (empty: ready): every minute of the candle history of each coupled market,
    and their mentions from the start of the crawled history up to the last minutes (on the candles' time axis)."""
    out = [f"{m} has {n}/{h['minutes']} minutes of candles" for m, n in h["candles"].items() if n < h["minutes"]]
    hi = h["hi"]
    if h["mentions_from"] is None or h["mentions_from"] > hi - timedelta(hours=DC_HISTORY_HOURS - 0.5):
        out.append(f"mentions of the coupled markets from {DC_HISTORY_HOURS - 0.5:g} h ago (so far from "
                   f"{_hm(h['mentions_from'])})")
    if h["mentions_to"] is None or h["mentions_to"] < hi - timedelta(minutes=10):
        out.append(f"mentions of the last 10 minutes (so far up to {_hm(h['mentions_to'])})")
    return out


def _hm(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t else "-"


def wait_for_data(s: Settings, timeout: float = 600.0, progress=print, since: datetime | None = None) -> dict[str, int]:
    """Poll PostgreSQL until the first screen's data is there (or time out): candles and mentions emitted by this
    run (since `since`), and the history (`history_missing` is empty)."""
    since = since or datetime.now(UTC)
    queries = {
        "trades": "SELECT count(*) FROM silver.trades",
        "candles_1m": "SELECT count(*) FROM gold.candles WHERE interval = '1m' AND emitted_at >= %(since)s",
        "mentions_1m": "SELECT count(*) FROM gold.mentions_1m WHERE emitted_at >= %(since)s",
        "posts": "SELECT count(*) FROM silver.posts",
    }
    t0 = time.monotonic()
    last, settled = "", -1
    while True:
        counts = {k: _count(s, q, since) for k, q in queries.items()}
        h = history_status(s, since)
        line = "  ".join(f"{k}={v}" for k, v in counts.items())
        line += (f"  history: candles {min(h['candles'].values())}/{h['minutes']} min, mentions "
                 f"{_hm(h['mentions_from'])} .. {_hm(h['mentions_to'])}")
        if line != last:
            progress(f"[{time.monotonic() - t0:5.0f}s] {line}")
            last = line
        missing = [f"no {k} emitted by this run" for k in ("candles_1m", "mentions_1m") if counts[k] == 0]
        missing += history_missing(h)
        if not missing and h["mentions"] == settled:  # and the crawled history has landed: no more since 2 s ago
            return counts
        settled = h["mentions"]
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"after {timeout:.0f}s still missing in PostgreSQL: {'; '.join(missing)}; "
                               "see `uv run coinpulse logs ingest-upbit` / `crawl-dc` / `candle-agent` / `sink`")
        time.sleep(2)  # polling PostgreSQL


LINKS = """
SELECT market, verdict, best_lag, p_adjusted, n FROM marts.link_summary
WHERE metric = 'mentions_absret' AND market = ANY(%(coupled)s) ORDER BY market
"""


def link_summary(s: Settings) -> tuple[int, list[tuple]]:
    """(rows of marts.link_summary, the coupled markets' mentions-vs-|return| verdicts)."""
    with psycopg.connect(s.pg_dsn(), connect_timeout=3) as c:
        n = c.execute("SELECT count(*) FROM marts.link_summary").fetchone()[0]
        return int(n), c.execute(LINKS, {"coupled": list(COUPLED)}).fetchall()


RUNS = """
SELECT count(*) FILTER (WHERE emitted_at >= %(since)s), min(bucket_start) FILTER (WHERE emitted_at >= %(since)s),
       max(bucket_start) FILTER (WHERE emitted_at >= %(since)s),
       count(*) FILTER (WHERE emitted_at < %(since)s), max(bucket_start) FILTER (WHERE emitted_at < %(since)s)
FROM gold.candles WHERE interval = '1m'
"""


def runs_summary(s: Settings, since: datetime) -> list[str]:
    """Lines saying which 1-minute candles this run emitted and which earlier runs left on the same state."""
    try:
        with psycopg.connect(s.pg_dsn(), connect_timeout=3) as c:
            now_n, first, last, before_n, before_last = c.execute(RUNS, {"since": since}).fetchone()
    except psycopg.Error as e:
        return [f"(could not read gold.candles: {e})"]
    hm = _hm
    lines = [f"this run         {now_n} 1-minute candles so far, minutes {hm(first)} .. {hm(last)} UTC"]
    if before_n:
        lines.append(f"earlier runs     {before_n} 1-minute candles on this state, the last at {hm(before_last)} UTC; "
                     "the chart shows both (`make purge` starts from nothing)")
    return lines


# the gold-marts deployment served by `coinpulse_flows serve` (flows/src/coinpulse_flows/deployments.py; a unit
# test holds these names to it: infra does not import the flows package)
MARTS_FLOW, MARTS_DEPLOYMENT = "gold-marts", "every-5-minutes"
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


RETRY_STATUS = {429, 502, 503, 504}  # what Prefect's own client retries (PREFECT_CLIENT_RETRY_EXTRA_CODES aside)


def _prefect_call(http: httpx.Client, method: str, url: str, deadline: float, **kw) -> dict:
    """One Prefect API call, retried while Prefect answers that it is busy or briefly unreachable (CI: a loaded
    Prefect server answered 503 to the demo's create_flow_run once), as Prefect's own client does; other errors and
    the deadline raise."""
    while True:
        try:
            r = http.request(method, url, **kw)
            if r.status_code not in RETRY_STATUS:
                return r.raise_for_status().json()
            err = f"HTTP {r.status_code}"
        except httpx.TransportError as e:
            err = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prefect at {url} still unavailable ({err}): see `uv run coinpulse logs prefect`")
        time.sleep(1)  # Prefect said it is busy: ask again


def refresh_marts_now(s: Settings, timeout: float = 300.0, progress=print) -> dict:
    """Run the marts deployment once now and wait until it finished; the flow run (id, state) or an error.

    Waits (until `timeout`) for the served flows process to have registered the deployment, creates a run of it
    through Prefect's REST API and polls that run until it is finished; raises RuntimeError saying what failed."""
    api = s.prefect_api
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10, headers=s.prefect_headers()) as http:
        dep = None
        while dep is None:
            try:
                r = http.get(f"{api}/deployments/name/{MARTS_FLOW}/{MARTS_DEPLOYMENT}")
                if r.status_code == 200:
                    dep = r.json()
                elif r.status_code != 404:
                    r.raise_for_status()
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            else:
                err = None
            if dep is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"deployment {MARTS_FLOW}/{MARTS_DEPLOYMENT} not registered in Prefect at {api} "
                                       f"after {timeout:.0f}s ({err or 'not found'}): see `uv run coinpulse logs flows`")
                time.sleep(1)  # polling Prefect for the served flows' registration
        run = _prefect_call(http, "POST", f"{api}/deployments/{dep['id']}/create_flow_run", deadline,
                            json={"name": f"demo-first-screen-{datetime.now(UTC):%H%M%S}", "tags": ["demo"]})
        progress(f"  marts: flow run {run['name']} ({run['id']}) of {MARTS_FLOW}/{MARTS_DEPLOYMENT} created")
        while True:
            run = _prefect_call(http, "GET", f"{api}/flow_runs/{run['id']}", deadline)
            state = run.get("state") or {}
            if state.get("type") in FINISHED:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the marts run {run['id']} is still {state.get('name')} after {timeout:.0f}s: "
                                   "see `uv run coinpulse logs flows`")
            time.sleep(1)  # polling the run's state
    if state["type"] != "COMPLETED":
        raise RuntimeError(f"the marts run {run['id']} ended {state.get('name')}: {state.get('message') or ''}; "
                           "see `uv run coinpulse logs flows`")
    return run


def wait_for_dashboard(s: Settings, timeout: float = 60.0, flow_run: str | None = None) -> bool:
    """Until the dashboard answers, and (with `flow_run`, a run name) its health snapshot, which it refreshes every
    COINPULSE_DASHBOARD_HEALTH_S, lists that run: what the first screen shows is then what the demo did."""
    deadline = time.monotonic() + timeout
    base = f"http://{s.host}:{s.dashboard_port}"
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/", timeout=3).status_code == 200:
                if flow_run is None:
                    return True
                runs = (httpx.get(f"{base}/api/health", timeout=10).json().get("prefect") or {}).get("runs") or []
                if any(r.get("name") == flow_run for r in runs):
                    return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)  # polling the dashboard until it answers (and shows the run)
    return False


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    s = get_settings()
    print(f"coinpulse demo: starting the simulators (scenario {SCENARIO}: {SIM_UPBIT_HISTORY_HOURS:g} h of past "
          f"trades, {DC_HISTORY_HOURS:g} h of past community) and the services (already running ones are kept)")
    since = datetime.now(UTC)
    for name, module, args, env in plan(s):
        pid = services.start_detached(name, module, args, env)
        print(f"  {name:13s} pid {pid:<7d} log: uv run coinpulse logs {name}")
    print(f"waiting for {HISTORY_HOURS} h of candles (ingest fetches the past first), the crawled mentions and this "
          "run's first candles to reach PostgreSQL …")
    try:
        counts = wait_for_data(s, timeout=float((argv or sys.argv[1:] or ["600"])[0]), since=since)
    except TimeoutError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    data_s = time.monotonic() - t0
    print(f"the first screen's data is in PostgreSQL after {data_s:.0f} s; refreshing the marts once now …")
    try:
        run = refresh_marts_now(s)
        n_links, links = link_summary(s)
    except (RuntimeError, httpx.HTTPError, psycopg.Error) as e:
        print(f"demo: the first marts refresh failed: {e}", file=sys.stderr)
        return 1
    if not n_links:
        print("demo: the marts refresh left marts.link_summary empty: the lead–lag panel would be empty; "
              "see `uv run coinpulse logs flows`", file=sys.stderr)
        return 1
    marts_s = time.monotonic() - t0
    ok = wait_for_dashboard(s, 90.0, flow_run=run["name"])
    ready_s = time.monotonic() - t0
    h = history_status(s, since)
    print()
    print(f"coinpulse is running on the simulated world {SCENARIO!r}:")
    print(f"  dashboard        http://{s.host}:{s.dashboard_port}/{'' if ok else '  (not answering yet)'}")
    login = ("COINPULSE_PREFECT_AUTH_STRING" if s.prefect_auth_string
             else f"the line in {local_secret_path(PREFECT_AUTH_SECRET)}")
    print(f"  Prefect UI       http://{s.host}:{s.prefect_port}/  (sign in with {login})")
    print("  live candles     uv run coinpulse topics tail candle.1m --follow")
    print("  all topics       uv run coinpulse topics list")
    print("  one query        uv run coinpulse query \"SELECT market, count(*) FROM gold.candles GROUP BY 1\"")
    print(f"  so far           {counts['trades']} trades, {counts['candles_1m']} 1-minute candles, "
          f"{counts['mentions_1m']} mention rows, {counts['posts']} posts")
    for line in runs_summary(s, since):
        print(f"  {line}")
    print(f"  history          {HISTORY_HOURS} h of 1-minute candles for {', '.join(COUPLED)} "
          f"({min(h['candles'].values())}/{h['minutes']} minutes each), their mentions {_hm(h['mentions_from'])} "
          f".. {_hm(h['mentions_to'])} UTC")
    print("  link             " + "; ".join(
        f"{m} {v.replace('community_', 'community ')}" + (f" by {abs(lag)} min" if lag and v != "no_link" else "")
        + (f" (p_adj {p:.3f}, n {n})" if p is not None else "") for m, v, lag, p, n in links)
        + f"  [{n_links} rows in marts.link_summary]")
    if ok:
        print(f"  first screen ready after {ready_s:.0f} s ({HISTORY_HOURS} h of candles, mentions and this run's "
              f"data in PostgreSQL after {data_s:.0f} s, marts refreshed after {marts_s:.0f} s; the goal is 120 s on "
              "a warm machine)")
    else:
        print(f"  first screen     not ready: the dashboard did not answer (or show the marts run) "
              f"{ready_s:.0f} s after start")
    print("  stop everything  make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
