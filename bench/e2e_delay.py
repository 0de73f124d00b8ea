"""End-to-end candle delay: a trade leaves the Upbit simulator -> its 1-minute candle row is in PostgreSQL.

    uv run python bench/e2e_delay.py [--minutes 3] [--markets 10] [--poll-ms 50]

Runs on an ISOLATED second stack (own state folder, every port shifted by 3000, `coinpulse up` with that
environment, `coinpulse down --purge` at the end), so the main stack is never touched. On it:

    sim-upbit (generated market, --restamp) -> ingest-upbit -> upbit.trade -> candle-agent -> candle.1m
        -> Kafka Connect (Debezium JDBC sink, upsert) -> gold.candles (interval '1m')

with every service at its default settings (candle grace COINPULSE_CANDLE_GRACE_MS, default 5000 ms). The peer, in
the same run on the same feed: a minimal direct pipeline as the lower bound - a second WebSocket client of the same
simulator (this file, `_peer` mode, its own process on the workspace interpreter; no third-party code) that builds
1-minute candles in memory and INSERTs each bucket's candles into its own table in the isolated PostgreSQL as soon as
the wall clock passes bucket end + the same grace.

Delay definition, per candle (market M, minute [b, b+60 s)), identical for both systems:

    delay = V - max(b + 60 s, S)

V: the time the candle's row first becomes visible in PostgreSQL (revision 0 for coinpulse). Neither table has an
insert-time column that marks visibility (gold.candles.emitted_at is the agent's emit time), so one connection polls
both tables every --poll-ms; V is the start of the first poll whose snapshot contains the row, an upper bound at most
one poll interval (+ query time) after the commit. S: the wall time the bucket's last trade left the simulator. The
simulator runs with --restamp: each trade's trade_timestamp is set to the wall clock at the moment it is published
to the connections (feed.py), so /sim/trades gives S exactly (ms) and the bucket a trade falls in is its send minute.
A candle cannot be final before b + 60 s + grace, so `delay - grace` is the time the system adds beyond the grace it
is configured to wait. coinpulse's delay is also split at emitted_at: agent = emitted_at - max(b+60 s, S) (includes
ingest and Kafka), sink = V - emitted_at (Connect + PostgreSQL + poll resolution).

Measured: the first --minutes whole minutes that start after everything is ready (both WebSocket clients subscribed,
the gold-candles connector RUNNING, the agent assigned upbit.trade), for every market with trades in them. The feed
starts right after `coinpulse up` and keeps running until every measured candle is visible, so buckets close on the
normal trade-driven path, not the idle timer. Samples are correlated: the agent closes all markets of a partition at
once and the peer inserts all markets of a minute in one transaction, so a run has few independent instants (see the
per-minute line). Goal (issue 8): coinpulse p99 < grace + 5 s.

The report block (not the progress lines) is appended to bench/results/e2e_delay.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psycopg
from coinpulse_testing.net import get_json
from coinpulse_testing.procs import Procs
from coinpulse_testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "e2e_delay.txt"
OFFSET = 3000
ALL_MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-SUI", "KRW-TRX", "KRW-LINK",
               "KRW-AVAX", "KRW-HBAR", "KRW-ETC", "KRW-BCH", "KRW-DOT", "KRW-OM"]
PEER_TABLE = "bench_e2e.peer_candles"
MIN = 60_000


# -- the peer: WebSocket -> in-memory 1m candles -> INSERT at bucket end + grace ---------------------------------
async def run_peer(ws_url: str, dsn: str, markets: list[str], grace_ms: int) -> None:
    import aiohttp
    import orjson

    buckets: dict[int, dict[str, dict]] = defaultdict(dict)  # bucket start -> market -> candle
    seen: set[tuple[str, int]] = set()
    closed_until = 0  # buckets below this were inserted; later trades for them are dropped (counted)
    late = 0
    conn = await psycopg.AsyncConnection.connect(dsn)

    async def closer() -> None:
        nonlocal closed_until
        while True:
            now = time.time() * 1000
            due = [b for b in buckets if b + MIN + grace_ms <= now]
            if due:
                rows = []
                for b in sorted(due):
                    for m, c in buckets.pop(b).items():
                        rows.append((m, dt.datetime.fromtimestamp(b / 1000, dt.UTC), c["open"], c["high"], c["low"],
                                     c["close"], c["volume"], c["n"], c["last"]))
                    closed_until = max(closed_until, b + MIN)
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO {PEER_TABLE} (market, bucket_start, open, high, low, close, volume, "
                        "trade_count, last_trade_ms) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
                await conn.commit()
                print(json.dumps({"inserted": len(rows), "late": late, "at": time.time()}), flush=True)
            nxt = min((b + MIN + grace_ms for b in buckets), default=now + 50)
            await asyncio.sleep(max(0.001, min(0.25, (nxt - time.time() * 1000) / 1000)))

    task = asyncio.create_task(closer())
    sub = [{"ticket": "e2e-peer"}, {"type": "trade", "codes": markets, "is_only_realtime": True},
           {"format": "DEFAULT"}]
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url, max_msg_size=1 << 22) as ws:
        await ws.send_str(json.dumps(sub))
        print(json.dumps({"subscribed": time.time()}), flush=True)
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            t = orjson.loads(msg.data)
            if t.get("type") != "trade":
                continue
            key = (t["code"], t["sequential_id"])
            if key in seen:
                continue
            seen.add(key)
            ts = t["trade_timestamp"]
            b = ts - ts % MIN
            if b < closed_until:
                late += 1
                continue
            p, v = t["trade_price"], t["trade_volume"]
            c = buckets[b].get(t["code"])
            if c is None:
                buckets[b][t["code"]] = {"open": p, "high": p, "low": p, "close": p, "volume": v, "n": 1, "last": ts}
            else:  # frames arrive in send order, which is trade_timestamp order under --restamp
                c["high"], c["low"], c["close"] = max(c["high"], p), min(c["low"], p), p
                c["volume"] += v
                c["n"] += 1
                c["last"] = ts
    task.cancel()
    raise SystemExit("peer: WebSocket closed")


# -- the isolated stack --------------------------------------------------------------------------------------------
def stack_env(tmp: Path) -> dict[str, str]:
    from coinpulse_platform.isolated import stack_env as isolated_env

    return isolated_env(tmp / "state", OFFSET, COINPULSE_LOG_FORMAT="json")


def cli(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    from coinpulse_platform.isolated import cli as isolated_cli

    return isolated_cli(env, *args, timeout=timeout)


def get(url: str):
    return get_json(url, ok_below=300)


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the maximum)."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def ms(v) -> int:
    return int(round(v.timestamp() * 1000))


class Poller:
    """One autocommit connection; each poll records when each (market, bucket) row was first visible."""

    def __init__(self, dsn: str, since_ms: int):
        self.c = psycopg.connect(dsn, autocommit=True)
        self.since = dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC)
        self.cp: dict[tuple[str, int], dict] = {}
        self.peer: dict[tuple[str, int], dict] = {}

    def poll(self) -> None:
        t = time.time() * 1000
        for m, b, rev, emitted, n in self.c.execute(
                "SELECT market, bucket_start, revision, emitted_at, trade_count FROM gold.candles "
                "WHERE interval = '1m' AND bucket_start >= %s", (self.since,)):
            self.cp.setdefault((m, ms(b)), {"seen": t, "revision": rev, "emitted": ms(emitted), "n": n})
        for m, b, n, ins in self.c.execute(
                f"SELECT market, bucket_start, trade_count, inserted_at FROM {PEER_TABLE} WHERE bucket_start >= %s",
                (self.since,)):
            self.peer.setdefault((m, ms(b)), {"seen": t, "n": n, "inserted": ms(ins)})


def stats(xs: list[float]) -> str:
    if not xs:
        return "n=0"
    return f"n={len(xs)} p50 {pct(xs, .5) / 1000:.3f} s  p99 {pct(xs, .99) / 1000:.3f} s  max {max(xs) / 1000:.3f} s"


def main() -> None:
    if sys.argv[1:2] == ["_peer"]:
        ws, dsn, markets, grace = sys.argv[2:6]
        asyncio.run(run_peer(ws, dsn, markets.split(","), int(grace)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=3,
                    help="whole minutes measured (the feed runs 1-2 min longer: service start + first minute)")
    ap.add_argument("--markets", type=int, default=10, help="the first N of the simulator's markets (5-15)")
    ap.add_argument("--poll-ms", type=int, default=50, help="PostgreSQL visibility poll interval")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="leave the isolated stack up (debugging)")
    a = ap.parse_args()
    from coinpulse_candle_agent.settings import CandleSettings
    from coinpulse_common.settings import Settings

    grace_ms = CandleSettings().candle_grace_ms
    markets = ALL_MARKETS[:a.markets]
    t_start = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="coinpulse-e2e-delay-"))
    os.chmod(tmp, 0o755)
    env = stack_env(tmp)
    logs = tmp / "logs"
    logs.mkdir()
    pg = (f"postgresql://coinpulse:{Settings().pg_superuser_password}@127.0.0.1:{env['COINPULSE_POSTGRES_PORT']}"
          "/coinpulse")
    sim_port = env["COINPULSE_SIM_UPBIT_PORT"]
    sim = f"http://127.0.0.1:{sim_port}"
    connect = f"http://127.0.0.1:{env['COINPULSE_CONNECT_PORT']}"
    procs = Procs(env, logs)
    say(f"isolated stack (ports +{OFFSET}) in {tmp}; `coinpulse up` ...")
    report: list[str] = []
    try:
        r = cli(env, "up")
        if r.returncode != 0:
            raise SystemExit(f"coinpulse up failed:\n{r.stdout}\n{r.stderr}")
        say("stack healthy: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        # the peer's own table first (independent of the sink's migrations), then every process at once: the feed
        # runs while the sink and the agent start; measuring begins at the first whole minute after all are ready
        with psycopg.connect(pg) as c:
            c.execute("CREATE SCHEMA IF NOT EXISTS bench_e2e")
            c.execute(f"CREATE TABLE {PEER_TABLE} (market text NOT NULL, bucket_start timestamptz NOT NULL, "
                      "open double precision, high double precision, low double precision, close double precision, "
                      "volume double precision, trade_count bigint, last_trade_ms bigint, "
                      "inserted_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (market, bucket_start))")
        procs.start("sink", ["-m", "coinpulse_sink", "run"])
        procs.start("candle-agent", ["-m", "coinpulse_candle_agent"])
        procs.start("sim-upbit", ["-m", "coinpulse_sim_upbit", "--port", sim_port, "--seed", str(a.seed),
                                  "--markets", ",".join(markets), "--restamp"])
        wait_for(lambda: procs.check() or get(sim + "/sim/stats"), 60, "the simulator")
        procs.start("peer", [str(Path(__file__).resolve()), "_peer", f"ws://127.0.0.1:{sim_port}/websocket/v1", pg,
                             ",".join(markets), str(grace_ms)])
        procs.start("ingest-upbit", ["-m", "coinpulse_ingest_upbit"], {
            "COINPULSE_INGEST_UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1", "COINPULSE_INGEST_UPBIT_REST_URL": sim,
            "COINPULSE_INGEST_MARKETS": ",".join(markets)})
        say(f"started sim-upbit ({len(markets)} markets, --restamp), peer, ingest-upbit, sink, candle-agent")

        def pg_ok(sql: str) -> bool:
            try:
                with psycopg.connect(pg, connect_timeout=5) as c:
                    c.execute(sql)
                return True
            except psycopg.Error:
                return False

        metrics = f"http://127.0.0.1:{env['COINPULSE_CANDLE_METRICS_PORT']}/metrics"

        def agent_assigned() -> bool:
            try:
                return "coinpulse_candle_assigned{topic=\"upbit.trade\"" in httpx.get(metrics, timeout=3).text
            except httpx.HTTPError:
                return False

        wait_for(lambda: procs.check() or (get(sim + "/sim/stats") or {}).get("clients", 0) >= 2, 120,
                 "both WebSocket clients (ingest-upbit, peer)")
        say("both WebSocket clients subscribed")
        wait_for(lambda: procs.check() or pg_ok("SELECT 1 FROM gold.candles LIMIT 1"), 180, "the sink's migrations")
        wait_for(lambda: procs.check() or ((get(f"{connect}/connectors/coinpulse-gold-candles/status") or {})
                                           .get("tasks") or [{}])[0].get("state") == "RUNNING", 180,
                 "the gold-candles connector RUNNING")
        say("sink migrated, gold-candles connector RUNNING")
        wait_for(lambda: procs.check() or agent_assigned(), 180, "the candle agent's upbit.trade assignment")
        say(f"candle-agent assigned (grace {grace_ms} ms)")
        t_sub = int(time.time() * 1000)
        first = (t_sub + 1000) // MIN * MIN + MIN
        window = range(first, first + a.minutes * MIN, MIN)
        last_close = first + a.minutes * MIN + grace_ms
        say(f"all ready; measuring minutes {dt.datetime.fromtimestamp(first / 1000, dt.UTC):%H:%M} .. "
            f"{dt.datetime.fromtimestamp((window[-1]) / 1000, dt.UTC):%H:%M} UTC for {len(markets)} markets; "
            f"last closes in {(last_close - t_sub) / 1000:.0f} s")

        poller = Poller(pg, first)
        want = {(m, b) for m in markets for b in window}  # refined below to buckets that had trades
        next_say = time.monotonic()
        deadline = last_close / 1000 + 120
        while True:
            t0 = time.monotonic()
            poller.poll()
            done_cp = sum(k in poller.cp for k in want)
            done_peer = sum(k in poller.peer for k in want)
            if time.time() * 1000 > last_close and done_cp == done_peer == len(want):
                break
            if time.monotonic() >= next_say:
                procs.check()
                st = get(sim + "/sim/stats") or {}
                say(f"feed {st.get('trades', '?')} trades | candles seen in PG: coinpulse {done_cp}/{len(want)}, "
                    f"peer {done_peer}/{len(want)}")
                next_say += 10
            if time.time() > deadline:
                say(f"deadline reached: coinpulse {done_cp}/{len(want)}, peer {done_peer}/{len(want)} candles")
                break
            time.sleep(max(0.0, a.poll_ms / 1000 - (time.monotonic() - t0)))
        say(f"candles seen in PG: coinpulse {done_cp}/{len(want)}, peer {done_peer}/{len(want)}")
        feed = get(sim + "/sim/stats") or {}
        history = (get(sim + "/sim/trades") or {}).get("trades", [])
        say(f"done; {len(history)} trades in the simulator's history")
        procs.stop_all()

        # -- reference: per bucket, the unique trades and the wall time the last one left the simulator (restamp)
        last_sent: dict[tuple[str, int], int] = {}
        count: dict[tuple[str, int], int] = defaultdict(int)
        for t in {(t["market"], t["sequential_id"]): t for t in history}.values():
            k = (t["market"], t["trade_timestamp"] - t["trade_timestamp"] % MIN)
            last_sent[k] = max(last_sent.get(k, 0), t["trade_timestamp"])
            count[k] += 1
        expected = sorted(k for k in want if k in count)

        def delays(seen: dict) -> tuple[list[float], list[float], int, int]:
            out, adds, missing, wrong = [], [], 0, 0
            for k in expected:
                if k not in seen:
                    missing += 1
                    continue
                ref = max(k[1] + MIN, last_sent[k])
                out.append(seen[k]["seen"] - ref)
                adds.append(seen[k]["seen"] - ref - grace_ms)
                wrong += seen[k]["n"] != count[k]
            return out, adds, missing, wrong

        cp, cp_add, cp_missing, cp_wrong = delays(poller.cp)
        peer, peer_add, peer_missing, peer_wrong = delays(poller.peer)
        agent = [poller.cp[k]["emitted"] - max(k[1] + MIN, last_sent[k]) for k in expected if k in poller.cp]
        sink = [poller.cp[k]["seen"] - poller.cp[k]["emitted"] for k in expected if k in poller.cp]
        rev0 = sum(1 for k in expected if k in poller.cp and poller.cp[k]["revision"] == 0)
        after_end = sum(1 for k in expected if last_sent[k] > k[1] + MIN)

        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "services", "libs",
                                "connect", "schemas", "infra"], capture_output=True, text=True).stdout.split("\n")
        dirty = [x[3:] for x in dirty if x.strip()]
        load = os.getloadavg()
        rep = report.append
        rep(f"=== e2e_delay {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}  commit {head}"
            f"{' + uncommitted changes in ' + ', '.join(dirty) if dirty else ''}")
        rep(f"command: uv run python bench/e2e_delay.py --minutes {a.minutes} --markets {a.markets} "
            f"--poll-ms {a.poll_ms} --seed {a.seed}")
        rep(f"isolated stack ports +{OFFSET}; {len(markets)} markets ({','.join(markets)}), generated feed at the "
            f"simulator's realistic rates ({feed.get('trades', '?')} trades in the run, "
            f"~{sum(count[k] for k in expected) / max(1, a.minutes * 60):.1f} trades/s in the measured minutes); "
            f"grace {grace_ms} ms (candle-agent default); poll every {a.poll_ms} ms; "
            f"load average at the end {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} on {os.cpu_count()} cores (shared)")
        rep("delay = time the candle row is first visible in PostgreSQL - max(bucket end b+60s, wall time the "
            "bucket's last trade left the simulator); 'added' = delay - grace")
        rep(f"candles measured: {len(expected)} ({a.minutes} whole minutes x markets with trades); last trade sent "
            f"after the bucket end: {after_end}")
        rep(f"coinpulse  delay  {stats(cp)}")
        rep(f"coinpulse  added  {stats(cp_add)}")
        rep(f"  agent (emitted_at - ref)     {stats(agent)}")
        rep(f"  sink  (visible - emitted_at) {stats(sink)}")
        rep(f"  first seen at revision 0: {rev0}/{len(cp)}; missing {cp_missing}; trade_count != reference at first "
            f"sight {cp_wrong}")
        rep(f"peer       delay  {stats(peer)}")
        rep(f"peer       added  {stats(peer_add)}")
        rep(f"  missing {peer_missing}; trade_count != reference {peer_wrong}")
        per_min = []
        for b in window:
            c = [poller.cp[k]["seen"] - max(b + MIN, last_sent[k]) for k in expected if k[1] == b and k in poller.cp]
            p = [poller.peer[k]["seen"] - max(b + MIN, last_sent[k]) for k in expected
                 if k[1] == b and k in poller.peer]
            per_min.append(f"{dt.datetime.fromtimestamp(b / 1000, dt.UTC):%H:%M} "
                           f"{max(c, default=math.nan) / 1000:.2f}/{max(p, default=math.nan) / 1000:.2f}")
        rep(f"  max delay per minute, coinpulse/peer (s): {', '.join(per_min)}")
        if cp and peer:
            r50, r99 = pct(cp, .5) / pct(peer, .5), pct(cp, .99) / pct(peer, .99)
            goal = pct(cp, .99) < grace_ms + 5000
            rep(f"ratio coinpulse/peer: p50 {r50:.2f}, p99 {r99:.2f}")
            rep(f"goal p99 < grace + 5 s = {(grace_ms + 5000) / 1000:.0f} s: "
                f"{'MET' if goal else 'NOT MET'} (p99 {pct(cp, .99) / 1000:.3f} s)")
            rep(f"SUMMARY e2e_delay (no dashboard): coinpulse p50 {pct(cp, .5) / 1000:.2f} s p99 "
                f"{pct(cp, .99) / 1000:.2f} s | peer p50 {pct(peer, .5) / 1000:.2f} s p99 {pct(peer, .99) / 1000:.2f}"
                f" s | ratio p50 {r50:.2f} p99 {r99:.2f} | grace {grace_ms / 1000:.0f} s | goal p99 < "
                f"{(grace_ms + 5000) / 1000:.0f} s {'MET' if goal else 'NOT MET'} | n={len(cp)}")
        print("\n" + "\n".join(report), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write("\n".join(report) + "\n\n")
        say(f"report appended to {RESULTS.relative_to(ROOT)}")
        if cp_missing or peer_missing or not cp:
            for name in ("candle-agent", "sink"):
                print(f"--- {name} log tail ---\n{procs.tail(name)}", file=sys.stderr)
            sys.exit(1)
    finally:
        procs.stop_all()
        if not a.keep:
            r = cli(env, "down", "--purge", timeout=240)
            say(f"isolated stack down --purge: {r.stderr.strip()[-200:]}")


if __name__ == "__main__":
    main()
