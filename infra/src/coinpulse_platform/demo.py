"""`make demo`: the whole pipeline on the bundled simulators, then where to look.

Starts (idempotently; already running processes are kept) the Upbit simulator replaying the bundled hour, the gallery
site, the sink (migrations + connectors + bronze S3 sink), ingest-upbit, crawl-dc, the candle agent, the Prefect flow
deployments and the dashboard, each detached with its log in `.coinpulse/logs/`. Then waits until candles and
mentions reach PostgreSQL, runs the gold-marts deployment once right away (through Prefect's API: the served flows
process executes it, as it would a scheduled run) so that the KPI and link panels and the dashboard's flow box are
filled on the first screen instead of after the first 5-minute schedule, and prints a summary with the time from
start to that first screen. `make down` stops everything.

Everything it talks to follows the environment (`COINPULSE_*` ports, `COINPULSE_STATE_DIR`), so it also drives an
isolated stack (`coinpulse_platform.isolated.stack_env`).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from coinpulse_common.settings import Settings, get_settings

from coinpulse_platform import services

DEMO_MARKETS = ""  # empty: ingest picks the top 15 by trade value from the simulator's REST API


def plan(s: Settings) -> list[tuple[str, str, list[str], dict[str, str]]]:
    sim_upbit = f"{s.host}:{s.sim_upbit_port}"
    return [
        ("sim-upbit", "coinpulse_sim_upbit",
         ["--recording", "default", "--speed", "1", "--port", str(s.sim_upbit_port)], {}),
        ("sim-dcinside", "coinpulse_sim_dcinside",
         ["--port", str(s.sim_dcinside_port), "--posts-per-minute", "6", "--comments-per-minute", "20",
          # the seeded initial community is dated in the last hours; live posts arrive in real time
          "--start", (datetime.now(UTC) - timedelta(hours=3)).isoformat(timespec="seconds")], {}),
        ("sink", "coinpulse_sink", ["run"], {}),
        ("ingest-upbit", "coinpulse_ingest_upbit", [],
         {"COINPULSE_UPBIT_WS_URL": f"ws://{sim_upbit}/websocket/v1",
          "COINPULSE_UPBIT_REST_URL": f"http://{sim_upbit}", "COINPULSE_MARKETS": DEMO_MARKETS}),
        # a demo wants community data within a minute; production keeps the polite 5-minute default
        ("crawl-dc", "coinpulse_crawl_dc", [],
         {"COINPULSE_DC_BASE_URL": f"http://{s.host}:{s.sim_dcinside_port}", "COINPULSE_DC_INTERVAL": "60",
          "COINPULSE_DC_DOWNLOAD_DELAY": "1.0"}),
        ("candle-agent", "coinpulse_candle_agent", [], {}),
        ("flows", "coinpulse_flows", ["serve"], {}),
        ("dashboard", "coinpulse_dashboard", [], {}),
    ]


def _count(s: Settings, sql: str, since: datetime) -> int:
    try:
        with psycopg.connect(s.pg_dsn(), connect_timeout=3) as c:
            return int(c.execute(sql, {"since": since} if "%(since)s" in sql else None).fetchone()[0])
    except psycopg.Error:
        return 0


def wait_for_data(s: Settings, timeout: float = 600.0, progress=print, since: datetime | None = None) -> dict[str, int]:
    """Poll PostgreSQL until candles and mentions emitted by this run (since `since`) have arrived (or time out)."""
    since = since or datetime.now(UTC)
    queries = {
        "trades": "SELECT count(*) FROM silver.trades",
        "candles_1m": "SELECT count(*) FROM gold.candles WHERE interval = '1m' AND emitted_at >= %(since)s",
        "mentions_1m": "SELECT count(*) FROM gold.mentions_1m WHERE emitted_at >= %(since)s",
        "posts": "SELECT count(*) FROM silver.posts",
    }
    t0 = time.monotonic()
    last = ""
    while True:
        counts = {k: _count(s, q, since) for k, q in queries.items()}
        line = "  ".join(f"{k}={v}" for k, v in counts.items())
        if line != last:
            progress(f"[{time.monotonic() - t0:5.0f}s] {line}")
            last = line
        if counts["candles_1m"] > 0 and counts["mentions_1m"] > 0:
            return counts
        if time.monotonic() - t0 > timeout:
            missing = [k for k in ("candles_1m", "mentions_1m") if counts[k] == 0]
            raise TimeoutError(f"no {', '.join(missing)} in PostgreSQL after {timeout:.0f}s; "
                               "see `uv run coinpulse logs candle-agent` / `sink` / `connect`")
        time.sleep(2)


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
    hm = lambda t: t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if t else "-"  # noqa: E731
    lines = [f"this run         {now_n} 1-minute candles so far, minutes {hm(first)} .. {hm(last)} UTC"]
    if before_n:
        lines.append(f"earlier runs     {before_n} 1-minute candles on this state, the last at {hm(before_last)} UTC; "
                     "the chart shows both (`make purge` starts from nothing)")
    return lines


# the gold-marts deployment served by `coinpulse_flows serve` (flows/src/coinpulse_flows/deployments.py; a unit
# test holds these names to it: infra does not import the flows package)
MARTS_FLOW, MARTS_DEPLOYMENT = "gold-marts", "every-5-minutes"
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def refresh_marts_now(s: Settings, timeout: float = 300.0, progress=print) -> dict:
    """Run the marts deployment once now and wait until it finished; the flow run (id, state) or an error.

    Waits (until `timeout`) for the served flows process to have registered the deployment, creates a run of it
    through Prefect's REST API and polls that run until it is finished; raises RuntimeError saying what failed."""
    api = s.prefect_api
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as http:
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
        r = http.post(f"{api}/deployments/{dep['id']}/create_flow_run",
                      json={"name": f"demo-first-screen-{datetime.now(UTC):%H%M%S}", "tags": ["demo"]})
        r.raise_for_status()
        run = r.json()
        progress(f"  marts: flow run {run['name']} ({run['id']}) of {MARTS_FLOW}/{MARTS_DEPLOYMENT} created")
        while True:
            run = http.get(f"{api}/flow_runs/{run['id']}").raise_for_status().json()
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
    print("coinpulse demo: starting the simulators and services (already running ones are kept)")
    for name, module, args, env in plan(s):
        pid = services.start_detached(name, module, args, env)
        print(f"  {name:13s} pid {pid:<7d} log: uv run coinpulse logs {name}")
    print("waiting for candles and mentions to reach PostgreSQL (the first minute closes ~65 s after start) …")
    since = datetime.now(UTC)
    try:
        counts = wait_for_data(s, timeout=float((argv or sys.argv[1:] or ["600"])[0]), since=since)
    except TimeoutError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    data_s = time.monotonic() - t0
    print(f"candles and mentions are in PostgreSQL after {data_s:.0f} s; refreshing the marts once now …")
    try:
        run = refresh_marts_now(s)
    except (RuntimeError, httpx.HTTPError) as e:
        print(f"demo: the first marts refresh failed: {e}", file=sys.stderr)
        return 1
    ok = wait_for_dashboard(s, 90.0, flow_run=run["name"])
    ready_s = time.monotonic() - t0
    print()
    print("coinpulse is running on the bundled simulators:")
    print(f"  dashboard        http://{s.host}:{s.dashboard_port}/{'' if ok else '  (not answering yet)'}")
    print(f"  Prefect UI       http://{s.host}:{s.prefect_port}/")
    print("  live candles     uv run coinpulse topics tail candle.1m --follow")
    print("  all topics       uv run coinpulse topics list")
    print("  one query        uv run coinpulse query \"SELECT market, count(*) FROM gold.candles GROUP BY 1\"")
    print(f"  so far           {counts['trades']} trades, {counts['candles_1m']} 1-minute candles, "
          f"{counts['mentions_1m']} mention rows, {counts['posts']} posts")
    for line in runs_summary(s, since):
        print(f"  {line}")
    if ok:
        print(f"  first screen ready after {ready_s:.0f} s (candles and mentions in PostgreSQL after {data_s:.0f} s, "
              "then the marts refreshed)")
    else:
        print(f"  first screen     not ready: the dashboard did not answer (or show the marts run) "
              f"{ready_s:.0f} s after start")
    print("  stop everything  make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
