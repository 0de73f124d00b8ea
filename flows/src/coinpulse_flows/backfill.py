"""Rebuild silver trades and gold candles (1m, and the 5m / 1h candles that contain the range) from bronze.

Bronze comes from Kafka (`upbit.raw`, found by timestamp with offsets_for_times) or from the S3 bronze archive
(JSON lines of raw_frame records under `bronze_prefix`, one object per `date=` day). Frames received in
[from, to + `late_s`) are parsed; trades whose trade time lies in [from, to) are deduplicated on
`(market, sequential_id)`. Then, in one transaction, the range is deleted from the silver and gold tables and
written again (silver rows, then 1-minute candles computed in SQL from those rows with the candle rules of
ARCHITECTURE.md, then every 5m and 1h candle overlapping the range recomputed from the 1-minute candles inside
it, which outside the range are the ones already there), so any number of runs converges to the same rows a
clean run produces.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import UPBIT_RAW
from psycopg import sql

from coinpulse_flows import layout
from coinpulse_flows.bronze import received_ms, trades_of_frame
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store

log = get_logger("coinpulse.flows.backfill")

Progress = Callable[[int, int], None]  # (done, total)

TRADE_COLUMNS = ("market", "sequential_id", "trade_timestamp", "price", "volume", "ask_bid", "prev_closing_price",
                 "change", "change_price", "stream_type", "backfilled", "received_at")
TIME_COLUMNS = {"trade_timestamp", "received_at"}

CANDLES = """
SELECT market, date_trunc('minute', trade_timestamp) AS bucket_start,
       (array_agg(price ORDER BY trade_timestamp, sequential_id))[1] AS open,
       max(price) AS high, min(price) AS low,
       (array_agg(price ORDER BY trade_timestamp DESC, sequential_id DESC))[1] AS close,
       sum(volume) AS volume, sum(price * volume) AS quote_volume,
       sum(price * volume) / nullif(sum(volume), 0) AS vwap, count(*) AS trade_count,
       coalesce(sum(volume) FILTER (WHERE ask_bid = 'BID'), 0) AS buy_volume,
       coalesce(sum(volume) FILTER (WHERE ask_bid = 'ASK'), 0) AS sell_volume,
       min(trade_timestamp) AS first_trade_at, max(trade_timestamp) AS last_trade_at,
       '1m'::text AS interval, 0 AS revision, now() AS emitted_at
FROM {trades} WHERE trade_timestamp >= %(lo)s AND trade_timestamp < %(hi)s
GROUP BY 1, 2
"""

# a rollup from the 1-minute candles of its buckets (the rules of the candle agent's rollups)
ROLLUP = """
SELECT market, date_bin(%(step)s::interval, bucket_start, TIMESTAMPTZ 'epoch') AS bucket_start,
       (array_agg(open ORDER BY bucket_start))[1] AS open, max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY bucket_start DESC))[1] AS close,
       sum(volume) AS volume, sum(quote_volume) AS quote_volume,
       sum(quote_volume) / nullif(sum(volume), 0) AS vwap, sum(trade_count) AS trade_count,
       sum(buy_volume) AS buy_volume, sum(sell_volume) AS sell_volume,
       min(first_trade_at) AS first_trade_at, max(last_trade_at) AS last_trade_at,
       %(iv)s::text AS interval, 0 AS revision, now() AS emitted_at
FROM {candles} WHERE "interval" = '1m' AND bucket_start >= %(lo)s AND bucket_start < %(hi)s
GROUP BY 1, 2
"""
ROLLUPS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


@dataclass
class BackfillResult:
    source: str
    start: str
    end: str
    frames: int = 0
    trades: int = 0
    silver_rows: int = 0
    candles: int = 0
    problems: dict[str, int] = field(default_factory=dict)


def _ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def kafka_frames(s: FlowSettings, start: datetime, end: datetime, topic: str = UPBIT_RAW,
                 progress: Progress | None = None) -> Iterator[dict[str, Any]]:
    from coinpulse_common.avro import TopicCodec
    from coinpulse_common.kafka import admin, consumer
    from confluent_kafka import TopicPartition

    codec = TopicCodec(topic, s, schema_topic=UPBIT_RAW)
    md = admin(s).list_topics(topic, timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        raise RuntimeError(f"topic {topic} does not exist")
    c = consumer(f"coinpulse-backfill-{int(time.time() * 1000)}", s)
    try:
        parts = list(md.topics[topic].partitions)
        lo = c.offsets_for_times([TopicPartition(topic, p, int(start.timestamp() * 1000)) for p in parts], timeout=10)
        hi = c.offsets_for_times([TopicPartition(topic, p, int(end.timestamp() * 1000)) for p in parts], timeout=10)
        plan = {}
        for a, b in zip(lo, hi, strict=True):
            _, high = c.get_watermark_offsets(TopicPartition(topic, a.partition), timeout=10)
            first = a.offset if a.offset >= 0 else high
            last = b.offset if b.offset >= 0 else high
            if last > first:
                plan[a.partition] = (first, last)
        total = sum(b - a for a, b in plan.values())
        done = 0
        if not plan:
            return
        c.assign([TopicPartition(topic, p, a) for p, (a, _) in plan.items()])
        open_parts = set(plan)
        deadline = time.monotonic() + 600
        while open_parts and time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            p = msg.partition()
            if p not in open_parts:
                continue
            if msg.offset() >= plan[p][1]:
                open_parts.discard(p)
                continue
            done += 1
            if progress:
                progress(done, total)
            if msg.offset() >= plan[p][1] - 1:
                open_parts.discard(p)
            yield codec.decode(msg.value())
        if open_parts:
            raise TimeoutError(f"backfill: partitions {sorted(open_parts)} of {topic} not read to the end")
    finally:
        c.close()


def s3_frames(s: FlowSettings, start: datetime, end: datetime, prefix: str,
              progress: Progress | None = None) -> Iterator[dict[str, Any]]:
    store = Store(s)
    objs = [o for o in store.list(prefix)
            if (d := layout.day_of_key(o.key)) is None or start.date() <= d <= end.date()]
    total, done = sum(o.size for o in objs), 0
    for o in sorted(objs, key=lambda o: o.key):
        body = store.c.get_object(Bucket=store.bucket, Key=o.key)["Body"]
        for line in io.TextIOWrapper(body, encoding="utf-8"):
            done += len(line.encode())
            if progress:
                progress(done, total)
            if line.strip():
                yield json.loads(line)


def rebuild(s: FlowSettings, start: datetime, end: datetime, source: str = "kafka", *, late_s: int = 120,
            progress: Progress | None = None) -> BackfillResult:
    if end <= start:
        raise ValueError(f"empty range: {start} .. {end}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start.second or start.microsecond or end.second or end.microsecond:
        raise ValueError("backfill ranges start and end on whole minutes (candles are rebuilt per minute)")
    read_to = end + timedelta(seconds=late_s)
    if source == "kafka":
        frames = kafka_frames(s, start, read_to, s.backfill_topic, progress)
    elif source == "s3":
        frames = s3_frames(s, start, read_to, s.backfill_s3_prefix, progress)
    else:
        raise ValueError(f"unknown source {source!r}: kafka or s3")
    r = BackfillResult(source, start.isoformat(), end.isoformat())
    stats: Counter = Counter()
    lo_ms, hi_ms = start.timestamp() * 1000, end.timestamp() * 1000
    trades: dict[tuple[str, int], dict[str, Any]] = {}
    for raw in frames:
        r.frames += 1
        try:
            raw = {**raw, "received_at": received_ms(raw.get("received_at") or 0)}
        except (TypeError, ValueError):
            stats["bad_received_at"] += 1
            continue
        if raw["received_at"] and not (lo_ms - late_s * 1000 <= raw["received_at"] < hi_ms + late_s * 1000):
            continue
        for t in trades_of_frame(raw, stats):
            if lo_ms <= t["trade_timestamp"] < hi_ms:
                trades.setdefault((t["market"], t["sequential_id"]), t)
    r.trades = len(trades)
    r.problems = dict(stats)
    r.silver_rows, r.candles = _write(s, start, end, list(trades.values()))
    log.info("backfill_done", **{k: v for k, v in r.__dict__.items() if k != "problems"}, problems=r.problems)
    return r


def _columns(conn: psycopg.Connection, qualified: str) -> list[str]:
    schema, table = qualified.split(".", 1)
    return [c for (c,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (schema, table)).fetchall()]


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (t - epoch) // step * step


def _write(s: FlowSettings, start: datetime, end: datetime, trades: list[dict[str, Any]]) -> tuple[int, int]:
    rng = {"lo": start, "hi": end}
    with psycopg.connect(s.pg_dsn()) as conn:
        tcols = [c for c in TRADE_COLUMNS if c in set(_columns(conn, s.trades_table))]
        conn.execute(sql.SQL("DELETE FROM {} WHERE trade_timestamp >= %(lo)s AND trade_timestamp < %(hi)s").format(
            _ident(s.trades_table)), rng)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            _ident(s.trades_table), sql.SQL(", ").join(map(sql.Identifier, tcols)))
        with conn.cursor().copy(copy_sql) as cp:
            for t in trades:
                cp.write_row([datetime.fromtimestamp(t[c] / 1000, UTC) if c in TIME_COLUMNS else t[c] for c in tcols])
        ccols = set(_columns(conn, s.candles_table))
        select_cols = ["market", "bucket_start", "open", "high", "low", "close", "volume", "quote_volume", "vwap",
                       "trade_count", "buy_volume", "sell_volume", "first_trade_at", "last_trade_at", "interval",
                       "revision", "emitted_at"]
        cols = [c for c in select_cols if c in ccols]
        delete = sql.SQL('DELETE FROM {} WHERE "interval" = %(iv)s AND bucket_start >= %(lo)s AND bucket_start < %(hi)s')
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM ({}) c")
        table, names = _ident(s.candles_table), sql.SQL(", ").join(map(sql.Identifier, cols))
        conn.execute(delete.format(table), {**rng, "iv": "1m"})
        cur = conn.execute(insert.format(table, names, names, sql.SQL(CANDLES).format(trades=_ident(s.trades_table))),
                           rng)
        candles = cur.rowcount
        for iv, step in ROLLUPS.items():
            r = {"lo": _floor(start, step), "hi": _floor(end - timedelta(microseconds=1), step) + step, "iv": iv,
                 "step": step}
            conn.execute(delete.format(table), r)
            candles += conn.execute(insert.format(table, names, names, sql.SQL(ROLLUP).format(candles=table)),
                                    r).rowcount
        return len(trades), candles
