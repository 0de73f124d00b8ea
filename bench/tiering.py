"""Tiering throughput vs PostgreSQL COPY for the same partition, in the same run, plus peak memory.

    uv run python bench/tiering.py [--rows 3000000] [--small 750000]

For each size: a fresh day partition of trade-like rows is created in a scratch schema; `COPY part TO STDOUT
(FORMAT binary)` is timed, read and discarded by the client, twice with each of two clients: `psql` writing to
/dev/null (C, no per-row work in the client) and psycopg (one Python iteration per row, which costs it ~25 %);
the fastest of the four is the COPY rate, so the peer is measured at its best. Then coinpulse's tiering of the same
partition (ADBC stream → zstd Parquet streamed into a multipart S3 upload → download and verify → detach + drop) is
timed while a thread samples the process RSS. Two sizes show whether memory grows with the partition.
Goal: ≥ 1/3 of the COPY rate. Results go to bench/results/tiering-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from coinpulse_flows import tiering
from coinpulse_flows.partitions import discover
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    def __init__(self):
        self.peak, self._stop = rss_mib(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def make_partition(s: FlowSettings, schema: str, rows: int) -> None:
    day = datetime.now(UTC).date() - timedelta(days=30)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        c.execute(f"""CREATE TABLE {schema}.trades (market text NOT NULL, sequential_id bigint NOT NULL,
            trade_timestamp timestamptz NOT NULL, price float8, volume float8, ask_bid text, stream_type text,
            backfilled boolean, received_at timestamptz) PARTITION BY RANGE (trade_timestamp)""")
        c.execute(f"CREATE TABLE {schema}.trades_d PARTITION OF {schema}.trades "
                  f"FOR VALUES FROM ('{day} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')")
        c.execute(f"""INSERT INTO {schema}.trades SELECT 'KRW-' || (g % 150), g,
            '{day} 00:00:00+00'::timestamptz + (g::float8 / {rows}) * interval '86399 s', 1000 + random() * 50,
            random() * 3, CASE WHEN g % 2 = 0 THEN 'BID' ELSE 'ASK' END, 'REALTIME', false,
            '{day} 00:00:00+00'::timestamptz + (g::float8 / {rows}) * interval '86399 s' + interval '150 ms'
            FROM generate_series(1, {rows}) g""")
        c.execute(f"VACUUM ANALYZE {schema}.trades_d")


def copy_psycopg(s: FlowSettings, schema: str) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    with psycopg.connect(s.pg_dsn()) as c, c.cursor().copy(f"COPY {schema}.trades_d TO STDOUT (FORMAT binary)") as cp:
        for block in cp:
            n += len(block)
    return time.perf_counter() - t0, n


def copy_psql(s: FlowSettings, schema: str) -> tuple[float, int]:
    out_path = RESULTS / f".copy-{schema}.err"
    t0 = time.perf_counter()
    with open("/dev/null", "wb") as out, open(out_path, "wb") as err:
        subprocess.run(["psql", "-X", "-q", s.pg_dsn(), "-c", f"COPY {schema}.trades_d TO STDOUT (FORMAT binary)"],
                       stdout=out, stderr=err, check=True)
    dt = time.perf_counter() - t0
    out_path.unlink()
    return dt, 0


def run(rows: int) -> dict:
    schema = f"zz_bench_{uuid.uuid4().hex[:8]}"
    s = FlowSettings(tier_schemas=[schema], tier_prefix=f"bench-tiering-{uuid.uuid4().hex[:8]}/")
    store = Store(s)
    make_partition(s, schema, rows)
    try:
        copies = {"psql": [], "psycopg": []}
        copy_bytes = 0
        for _ in range(2):
            copies["psql"].append(copy_psql(s, schema)[0])
            dt, copy_bytes = copy_psycopg(s, schema)
            copies["psycopg"].append(dt)
        copy_s = min(min(v) for v in copies.values())
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            (p,) = discover(c, [schema])
        base = rss_mib()
        t0 = time.perf_counter()
        with PeakRss() as peak:
            r = tiering.tier_partition(s, p, store)
        tier_s = time.perf_counter() - t0
        assert r.rows == rows and r.state == "tiered"
        return {"rows": rows, "copy_s": copy_s, "copy_runs_s": copies, "copy_mib": copy_bytes / 2**20,
                "tier_s": tier_s, "parquet_mib": r.bytes / 2**20, "rss_base": base, "rss_peak": peak.peak}
    finally:
        for o in list(store.list(s.tier_prefix)):
            store.delete(o.key)
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--small", type=int, default=750_000)
    a = ap.parse_args()
    results = [run(a.small), run(a.rows)]
    for r in results:
        r["copy_rows_per_s"] = round(r["rows"] / r["copy_s"])
        r["tier_rows_per_s"] = round(r["rows"] / r["tier_s"])
        r["ratio"] = round(r["tier_rows_per_s"] / r["copy_rows_per_s"], 3)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tiering-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"goal_ratio": 1 / 3, "results": results}, indent=2) + "\n")
    print(f"{'rows':>10} {'COPY rows/s':>12} {'tiering rows/s':>15} {'ratio':>6} {'COPY MiB':>9} "
          f"{'parquet MiB':>11} {'RSS base':>9} {'RSS peak':>9} {'growth':>7}")
    for r in results:
        cr, tr = r["rows"] / r["copy_s"], r["rows"] / r["tier_s"]
        print(f"{r['rows']:>10} {cr:>12,.0f} {tr:>15,.0f} {tr / cr:>6.2f} {r['copy_mib']:>9.1f} "
              f"{r['parquet_mib']:>11.1f} {r['rss_base']:>9.1f} {r['rss_peak']:>9.1f} "
              f"{r['rss_peak'] - r['rss_base']:>7.1f}")
    small, big = results
    print(f"tiering/COPY throughput at {big['rows']:,} rows: "
          f"{(big['rows'] / big['tier_s']) / (big['rows'] / big['copy_s']):.2f} (goal >= 0.33); "
          f"peak RSS growth {small['rss_peak'] - small['rss_base']:.0f} MiB at {small['rows']:,} rows vs "
          f"{big['rss_peak'] - big['rss_base']:.0f} MiB at {big['rows']:,} rows (MiB)")
    for r in results:
        print(f"{r['rows']:,} rows: COPY runs (s) psql {r['copy_runs_s']['psql']} psycopg "
              f"{r['copy_runs_s']['psycopg']}; tiering {r['tier_s']:.2f} s")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
