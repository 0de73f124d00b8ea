"""sink benchmark: Kafka -> PostgreSQL through Kafka Connect (Debezium JDBC sink, upsert) vs PostgreSQL COPY.

In one run, against the running stack (`uv run coinpulse up`):

1. pre-fill a fresh topic with N Avro trades (the upbit.trade schema);
2. apply the real `connect/silver-trades.json` connector (in an isolated namespace) and time until all N rows are
   in the partitioned `silver.trades` table: rows/s from connector creation, and steady rows/s from first to last
   row;
3. COPY the same N rows into an identical, freshly migrated table (the physical reference);
4. end-to-end delay: with the connector caught up, produce trades one at a time (20/s) and time each from
   produce to the row being visible (polled every 10 ms).

Run: `uv run python bench/sink_pg.py [--rows 100000] [--latency-records 200]`. Results are printed and saved to
bench/results/sink_pg-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec, schema_text
from coinpulse_common.kafka import producer
from coinpulse_sink import connectors as cfiles
from coinpulse_sink.db import drop_namespace, maintain_partitions, migrate
from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

RESULTS = Path(__file__).resolve().parent / "results"
COLS = ("market", "sequential_id", "trade_timestamp", "price", "volume", "ask_bid", "prev_closing_price", "change",
        "change_price", "stream_type", "backfilled", "received_at")


def trade(i: int, t0: int) -> dict:
    return {"market": f"KRW-C{i % 50:02d}", "sequential_id": 1_000_000 + i, "trade_timestamp": t0 + i // 10,
            "price": 1000.0 + i % 97, "volume": 0.001 * (i % 1000 + 1), "ask_bid": "BID" if i % 2 else "ASK",
            "prev_closing_price": 999.0, "change": "RISE", "change_price": 1.0, "stream_type": "REALTIME",
            "backfilled": False, "received_at": t0 + i // 10 + 3}


def count(s: SinkSettings, table: str) -> int:
    with psycopg.connect(s.pg_dsn()) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--latency-records", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    s = SinkSettings()
    tag = uuid.uuid4().hex[:8]
    conn_ns, copy_ns = Names(f"bench{tag}"), Names(f"benchcopy{tag}")
    topic = conn_ns.topic(topics.UPBIT_TRADE)
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    SchemaRegistryClient({"url": s.registry}).register_schema(f"{topic}-value", Schema(schema_text("trade"), "AVRO"))
    ns_settings = [SinkSettings(sink_namespace=n.ns) for n in (conn_ns, copy_ns)]
    for n, ss in zip((conn_ns, copy_ns), ns_settings, strict=True):
        migrate(ss, n)
        maintain_partitions(ss, n)
    t0 = int(time.time() * 1000) - 3_600_000
    rows = [trade(i, t0) for i in range(args.rows)]
    name = None
    try:
        # 1. pre-fill
        codec = TopicCodec(topic, s, schema_topic=topics.UPBIT_TRADE)
        p = producer(s)
        t = time.perf_counter()
        for r in rows:
            p.produce(topic, key=r["market"].encode(), value=codec.encode(r))
            p.poll(0)
        assert p.flush(60) == 0
        fill_s = time.perf_counter() - t
        print(f"pre-filled {args.rows} records in {fill_s:.1f} s")

        # 2. through Connect
        (cf,) = cfiles.load(s.connect_dir(), "silver-trades")
        name, cfg = cfiles.render(cf, s, conn_ns)
        table = f'"{conn_ns.silver}".trades'
        t_start = time.perf_counter()
        httpx.put(f"{s.connect}/connectors/{name}/config", json=cfg, timeout=30).raise_for_status()
        t_first = None
        deadline = time.monotonic() + args.timeout
        while True:
            n = count(s, table)
            now = time.perf_counter()
            if n and t_first is None:
                t_first, n_first = now, n
            if n >= args.rows:
                t_done = now
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out with {n}/{args.rows} rows; status: "
                                 f"{httpx.get(f'{s.connect}/connectors/{name}/status').text[:1000]}")
            time.sleep(0.05)
        connect_total = args.rows / (t_done - t_start)
        connect_steady = (args.rows - n_first) / max(1e-9, t_done - t_first)
        print(f"connect: {args.rows} rows in {t_done - t_start:.2f} s (incl. task start {t_first - t_start:.2f} s)"
              f" -> {connect_total:,.0f} rows/s; steady {connect_steady:,.0f} rows/s")

        # 3. COPY the same rows
        def ts(ms: int) -> dt.datetime:
            return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)

        t = time.perf_counter()
        with psycopg.connect(s.pg_dsn()) as c:
            with c.cursor().copy(f'COPY "{copy_ns.silver}".trades ({", ".join(COLS)}) FROM STDIN') as cp:
                for r in rows:
                    cp.write_row([ts(r[k]) if k in ("trade_timestamp", "received_at") else r[k] for k in COLS])
            c.commit()
        copy_s = time.perf_counter() - t
        assert count(s, f'"{copy_ns.silver}".trades') == args.rows
        copy_rate = args.rows / copy_s
        print(f"COPY:    {args.rows} rows in {copy_s:.2f} s -> {copy_rate:,.0f} rows/s")

        # 4. end-to-end delay, one record at a time
        delays = []
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            for j in range(args.latency_records):
                r = trade(args.rows + j, t0)
                p.produce(topic, key=r["market"].encode(), value=codec.encode(r))
                p.flush(10)
                sent = time.perf_counter()
                while not c.execute(f"SELECT 1 FROM {table} WHERE market = %s AND sequential_id = %s",
                                    (r["market"], r["sequential_id"])).fetchone():
                    if time.perf_counter() - sent > 60:
                        raise SystemExit("a latency record did not arrive within 60 s")
                    time.sleep(0.01)
                delays.append((time.perf_counter() - sent) * 1000)
                time.sleep(max(0.0, 0.05 - (time.perf_counter() - sent)))
        q = statistics.quantiles(delays, n=100)
        lat = {"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "max_ms": round(max(delays), 1)}
        print(f"Kafka -> row delay over {len(delays)} records: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
              f"max {lat['max_ms']} ms")
        ratio = connect_steady / copy_rate
        print(f"ratio Connect(steady)/COPY = {ratio:.3f}  (Connect incl. start/COPY = {connect_total / copy_rate:.3f})")
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"sink_pg-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps({
            "rows": args.rows, "connect_rows_per_s": round(connect_total), "connect_steady_rows_per_s":
            round(connect_steady), "copy_rows_per_s": round(copy_rate), "ratio_steady": round(ratio, 4),
            "ratio_total": round(connect_total / copy_rate, 4), "latency": lat,
            "connector": {k: v for k, v in cfg.items() if "password" not in k}}, indent=2))
        print(f"saved {out}")
    finally:
        if name:
            httpx.delete(f"{s.connect}/connectors/{name}", timeout=30)
        for n, ss in zip((conn_ns, copy_ns), ns_settings, strict=True):
            drop_namespace(ss, n)
        admin.delete_topics([topic])


if __name__ == "__main__":
    main()
