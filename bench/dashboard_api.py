"""Dashboard API latency over a day of 1-minute candles and mentions for 20 markets, against a naive peer.

    uv run python bench/dashboard_api.py [--requests 100]

Both systems run in the same run, as separate server processes on the same PostgreSQL, over the same scratch
schema (28 800 1-minute candles plus 5m/1h rollups, mentions, posts; the sink's primary keys and indexes):

- **coinpulse**: `python -m coinpulse_dashboard` with its overview cache OFF (every request runs its query, the
  worst case; live, the overview is recomputed once per new minute and served from memory in between).
- **naive peer**: the same endpoints and responses, written the way a raw-SQL Grafana panel plus transformations
  (or a first straightforward implementation) does it: `SELECT *` over the dashboard's time range (a day) for the
  panel, and the shaping in Python — rolling up mentions, ranking markets, matching posts, cutting to the newest
  bars. Same HTTP framework (aiohttp) and a connection pool, so the difference is the query design: bounded index
  ranges with LIMITs, aggregation and JSON built inside PostgreSQL, one statement per panel.

Requests are sequential (one viewer), after a warm-up; the mix is what the page does: overview, 1m chart (1 440
bars), 1h chart, live increment (`since`), posts. Prints p50/p95 per endpoint and over the mix, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# --------------------------------------------------------------------------------------------------------------------
# the naive peer (run as `python bench/dashboard_api.py --serve-naive PORT SCHEMA`)


def serve_naive(port: int, schema: str) -> None:
    from aiohttp import web
    from coinpulse_dashboard import queries
    from coinpulse_dashboard.settings import DashboardSettings
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    s = DashboardSettings()
    aliases = queries.load_aliases(s.aliases_file())
    steps = {"1m": 60, "5m": 300, "1h": 3600}

    async def rows(pool, q, params=()):
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(q, params)
            return await cur.fetchall()

    async def day_range(pool):
        (r,) = await rows(pool, f"SELECT max(bucket_start) AS hi FROM {schema}.candles")
        return r["hi"]

    def jsonify(d):
        return web.Response(text=json.dumps(d, default=str), content_type="application/json")

    async def overview(request):
        pool = request.app["pool"]
        hi = await day_range(pool)
        data = await rows(pool, f"SELECT * FROM {schema}.candles WHERE bucket_start > %s - interval '1 day' "
                                "AND bucket_start <= %s", (hi, hi))
        by: dict[str, list] = {}
        for r in data:
            if r["interval"] == "1m":
                by.setdefault(r["market"], []).append(r)
        out = []
        for m, rs in by.items():
            rs.sort(key=lambda r: r["bucket_start"])
            rets = [math.log(r["close"] / r["open"]) for r in rs if r["open"] > 0 and r["close"] > 0]
            out.append({"market": m, "trade_value": sum(r["quote_volume"] for r in rs),
                        "volume": sum(r["volume"] for r in rs), "trade_count": sum(r["trade_count"] for r in rs),
                        "last": rs[-1]["close"], "change": rs[-1]["close"] / rs[0]["open"] - 1,
                        "range": (max(r["high"] for r in rs) - min(r["low"] for r in rs)) / min(r["low"] for r in rs),
                        "volatility": statistics.stdev(rets) if len(rets) > 1 else None})
        top = sorted(out, key=lambda x: -x["trade_value"])[:10]
        vol = sorted((x for x in out if x["volatility"] is not None), key=lambda x: -x["volatility"])[:10]
        return jsonify({"markets": sorted(by), "top_trade_value": top, "volatility": vol})

    async def series(request):
        pool = request.app["pool"]
        market, tf = request.query["market"], request.query.get("tf", "1m")
        limit, since = int(request.query.get("limit", 1440)), int(request.query.get("since", 0))
        step = steps[tf]
        hi = await day_range(pool)
        cs = await rows(pool, f"SELECT * FROM {schema}.candles WHERE market = %s AND bucket_start > %s - interval "
                              "'1 day'", (market, hi))
        cs = sorted((r for r in cs if r["interval"] == tf and r["bucket_start"].timestamp() >= since),
                    key=lambda r: r["bucket_start"])[-limit:]
        ms = await rows(pool, f"SELECT * FROM {schema}.mentions_1m WHERE market = %s AND bucket_start > %s - "
                              "interval '1 day'", (market, hi))
        lo = cs[0]["bucket_start"].timestamp() if cs else 0
        agg: dict[int, list] = {}
        for r in ms:
            t = int(r["bucket_start"].timestamp()) // step * step
            if t >= lo:
                a = agg.setdefault(t, [0, 0, 0, 0, 0])
                a[0] += r["mentions"]
                a[1] += r["posts"]
                a[2] += r["comments"]
                a[3] += r["positive"]
                a[4] += r["negative"]
        return jsonify({
            "market": market, "tf": tf, "step": step,
            "candles": [{"time": int(r["bucket_start"].timestamp()), **{k: r[k] for k in (
                "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "buy_volume",
                "sell_volume", "revision")}} for r in cs],
            "mentions": [{"time": t, "mentions": a[0], "posts": a[1], "comments": a[2],
                          "sentiment": (a[3] - a[4]) / max(1, a[3] + a[4])} for t, a in sorted(agg.items())]})

    async def posts(request):
        pool = request.app["pool"]
        market = request.query["market"]
        p = queries.market_patterns(market, aliases)
        ci, cs = re.compile(p.ci, re.I), re.compile(p.cs)
        data = await rows(pool, f"SELECT * FROM {schema}.posts")
        hi = max((r["created_at"] for r in data), default=None)
        hits = [r for r in data if not r["deleted"] and hi and (hi - r["created_at"]).total_seconds() < 86400
                and any(x.search(r["title"]) or x.search(r["body"] or "") for x in (ci, cs))]
        hits.sort(key=lambda r: (r["created_at"], r["post_no"]), reverse=True)
        keep = ("gallery", "post_no", "title", "created_at", "views", "recommend", "reply_count", "url")
        return jsonify({"market": market, "posts": [
            {**{k: r[k] for k in keep}, "snippet": (r["body"] or "")[:240]} for r in hits[:25]]})

    async def healthz(_):
        return web.json_response({"ok": True})

    async def lifecycle(app):
        app["pool"] = AsyncConnectionPool(s.reader_dsn(), min_size=2, max_size=8, open=False,
                                          kwargs={"autocommit": True})
        await app["pool"].open()
        yield
        await app["pool"].close()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.add_routes([web.get("/api/overview", overview), web.get("/api/series", series),
                    web.get("/api/posts", posts), web.get("/healthz", healthz)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --------------------------------------------------------------------------------------------------------------------
# the driver


def _start(cmd: list[str], env: dict, port: int, log: Path) -> subprocess.Popen:
    from coinpulse_testing.net import get_json
    from coinpulse_testing.procs import spawn, stop
    from coinpulse_testing.wait import WaitTimeout, wait_for

    proc = spawn(cmd, log, env)

    def up():
        if proc.poll() is not None:
            raise SystemExit(f"{cmd} exited: {log.read_text()[-2000:]}")
        return get_json(f"http://127.0.0.1:{port}/healthz", timeout=1, ok_below=300) is not None

    try:
        wait_for(up, 30, "/healthz", 0.2)
    except WaitTimeout:
        stop(proc, 5)
        raise SystemExit(f"{cmd} did not start: {log.read_text()[-2000:]}") from None
    return proc


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


async def _measure(base: str, plan: list[tuple[str, str]], warmup: int) -> dict[str, list[float]]:
    import aiohttp

    out: dict[str, list[float]] = {}
    async with aiohttp.ClientSession() as http:
        for i, (name, path) in enumerate(plan):
            t0 = time.perf_counter()
            async with http.get(base + path) as r:
                body = await r.read()
                assert r.status == 200, (name, r.status, body[:200])
            if i >= warmup:
                out.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100, help="measured requests per endpoint and system")
    ap.add_argument("--serve-naive", nargs=2, metavar=("PORT", "SCHEMA"))
    a = ap.parse_args()
    if a.serve_naive:
        serve_naive(int(a.serve_naive[0]), a.serve_naive[1])
        return

    from coinpulse_dashboard.settings import DashboardSettings
    from coinpulse_testing import sample
    from coinpulse_testing.net import free_port
    from coinpulse_testing.procs import stop_all

    s = DashboardSettings()
    schema = f"dash_bench_{uuid.uuid4().hex[:8]}"
    print(f"writing a day of 1-minute data for 20 markets into {schema} ...", flush=True)
    day = sample.generate(schema)
    sample.write(s.pg_dsn(), day)
    n1m = sum(len(v) for v in day.candles_1m.values())
    nmen = sum(len(v) for v in day.mentions.values())
    print(f"  {n1m} 1m candles (+5m/1h rollups), {nmen} mention minutes, {len(day.posts)} posts")
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    procs = []
    try:
        ours, naive = free_port(), free_port()
        env = {**os.environ, "COINPULSE_DASHBOARD_PORT": str(ours), "COINPULSE_DASHBOARD_GOLD_SCHEMA": schema,
               "COINPULSE_DASHBOARD_SILVER_SCHEMA": schema, "COINPULSE_DASHBOARD_OVERVIEW_CACHE": "false",
               "COINPULSE_DASHBOARD_HEALTH_S": "60", "COINPULSE_LOG_LEVEL": "WARNING"}
        procs.append(_start([sys.executable, "-m", "coinpulse_dashboard"], env, ours, tmp / "ours.log"))
        procs.append(_start([sys.executable, __file__, "--serve-naive", str(naive), schema], dict(os.environ), naive,
                            tmp / "naive.log"))
        rnd = random.Random(1)
        markets = sorted(day.candles_1m)
        since = int(day.end.timestamp()) - 4 * 60
        plan: list[tuple[str, str]] = []
        for _ in range(a.requests + 5):
            m = rnd.choice(markets)
            plan += [("overview", "/api/overview"),
                     ("series 1m x1440", f"/api/series?market={m}&tf=1m&limit=1440"),
                     ("series 1h", f"/api/series?market={m}&tf=1h&limit=720"),
                     ("series live increment", f"/api/series?market={m}&tf=1m&limit=1440&since={since}"),
                     ("posts", f"/api/posts?market={m}&limit=25")]
        warm = 5 * 5
        # interleave the systems in rounds so background load on the shared machine hits both alike
        res = {"coinpulse": {}, "naive": {}}
        chunk = 50
        for i in range(0, len(plan), chunk):
            part = plan[i:i + chunk]
            w = warm if i == 0 else 0
            for name, port in (("coinpulse", ours), ("naive", naive)):
                r = asyncio.run(_measure(f"http://127.0.0.1:{port}", part, w))
                for k, v in r.items():
                    res[name].setdefault(k, []).extend(v)
        print(f"\nlatency per request, ms ({a.requests} measured requests per endpoint and system, sequential)")
        print(f"{'endpoint':<24}{'coinpulse p50':>14}{'p95':>9}{'naive p50':>12}{'p95':>9}{'p95 ratio':>11}")
        for k in res["coinpulse"]:
            o, n = res["coinpulse"][k], res["naive"][k]
            print(f"{k:<24}{_pct(o, .5):>14.1f}{_pct(o, .95):>9.1f}{_pct(n, .5):>12.1f}{_pct(n, .95):>9.1f}"
                  f"{_pct(n, .95) / _pct(o, .95):>10.1f}x")
        allo = [x for v in res["coinpulse"].values() for x in v]
        alln = [x for v in res["naive"].values() for x in v]
        print(f"{'all (page mix)':<24}{_pct(allo, .5):>14.1f}{_pct(allo, .95):>9.1f}{_pct(alln, .5):>12.1f}"
              f"{_pct(alln, .95):>9.1f}{_pct(alln, .95) / _pct(allo, .95):>10.1f}x")
        ok = _pct(allo, .95) < 100
        print(f"\ncoinpulse p95 over the mix {_pct(allo, .95):.1f} ms: goal p95 < 100 ms {'met' if ok else 'NOT met'}; "
              f"naive/coinpulse p95 ratio {_pct(alln, .95) / _pct(allo, .95):.1f}x, "
              f"p50 ratio {_pct(alln, .5) / _pct(allo, .5):.1f}x")
    finally:
        stop_all(procs, 10)
        sample.drop(s.pg_dsn(), schema)


if __name__ == "__main__":
    main()
