"""Rebuild silver trades and gold candles (1m, and the 5m / 1h candles that contain the range) from bronze.

Bronze comes from Kafka (`upbit.raw`, found by timestamp with offsets_for_times) or from the S3 bronze archive the
sink's bronze sink writes (layout and line format in `coinpulse_common.bronze`). Frames received in
[from, to + `late_s`) are parsed; trades whose trade time lies in [from, to) are deduplicated on
`(market, sequential_id)`, the first received winning, as in the ingester.

Nothing is deleted that cannot be rebuilt: before the tables are touched the source must prove that it holds the
whole range (S3: an object for every hour of the read window and no offset missing between consecutive objects of a
partition; Kafka: every partition's log still starts before the window). Otherwise `rebuild` raises
`IncompleteSource` naming the hours that are missing, and nothing changes.

Then, in one transaction, the range is deleted from the silver and gold tables and written again (silver rows, then
1-minute candles computed in SQL from those rows with the candle rules of ARCHITECTURE.md, then every 5m and 1h
candle overlapping the range recomputed from the 1-minute candles inside it, which outside the range are the ones
already there), so any number of runs converges to the same rows a clean run produces. A dry run does the same
and rolls back, reporting per table the rows there now and the rows the rebuild would leave.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from coinpulse_common import bronze
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import UPBIT_RAW
from coinpulse_upbit.bronze import received_ms, trades_of_frame
from psycopg import sql

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
    dry_run: bool = False
    # table (candles by interval) -> {"now": rows in the range before, "rebuilt": rows after}
    replace: dict[str, dict[str, int]] = field(default_factory=dict)


class IncompleteSource(RuntimeError):
    """The source does not hold the whole range; nothing was changed."""

    def __init__(self, source: str, missing: list[str], detail: list[str]):
        self.missing, self.detail = missing, detail
        super().__init__(f"backfill refused: {source} bronze does not cover the range, nothing was changed; "
                         f"missing hours (UTC): {', '.join(missing) or '-'}" + (f" ({'; '.join(detail)})" if detail else ""))


def _ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def _hour_text(ms: int) -> str:
    day, hour = bronze.hour_of(ms)
    return f"{day}T{hour:02d}"


def _hours_text(lo_ms: int, hi_ms: int) -> list[str]:
    return [f"{d}T{h:02d}" for d, h in bronze.hours(lo_ms, hi_ms)]


class KafkaBronze:
    """The records of one topic (`upbit.raw` by default) with a timestamp in [start, end). The log must start before
    `start` in every partition (an offset of the partition holds a record older than the window, or the log was
    never truncated); otherwise `missing` names the hours retention removed and nothing is yielded."""

    def __init__(self, s: FlowSettings, start: datetime, end: datetime, topic: str = UPBIT_RAW,
                 progress: Progress | None = None, schema_topic: str = UPBIT_RAW):
        self.s, self.start, self.end, self.topic, self.progress = s, start, end, topic, progress
        self.schema_topic = schema_topic
        self.missing: list[str] = []
        self.detail: list[str] = []
        self._earlier: dict[int, list[bronze.ObjectKey]] = {}  # hour start (ms) -> its objects, for _anchor_before

    def frames(self) -> Iterator[dict[str, Any]]:
        """The decoded values, in offset order per partition."""
        from coinpulse_common.avro import TopicCodec

        codec = TopicCodec(self.topic, self.s, schema_topic=self.schema_topic)
        for _, _, _, value in self.records():
            yield codec.decode(value)

    def records(self) -> Iterator[tuple[int, int, int, bytes | None]]:
        """(partition, offset, Kafka timestamp ms, raw value) in offset order per partition."""
        from coinpulse_common.kafka import admin, consumer
        from confluent_kafka import KafkaError, TopicPartition

        s, topic, start, end, progress = self.s, self.topic, self.start, self.end, self.progress
        md = admin(s).list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise RuntimeError(f"topic {topic} does not exist")
        # partition EOF: a log that ends with a transaction marker (a transactional writer, e.g. the crawler's) has
        # no record at its last offset, so reaching the end is the signal that a partition is read
        c = consumer(f"coinpulse-backfill-{int(time.time() * 1000)}", s, **{"enable.partition.eof": True})
        start_ms = int(start.timestamp() * 1000)
        try:
            parts = list(md.topics[topic].partitions)
            lo = c.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=10)
            hi = c.offsets_for_times([TopicPartition(topic, p, int(end.timestamp() * 1000)) for p in parts], timeout=10)
            plan = {}
            for a, b in zip(lo, hi, strict=True):
                low, high = c.get_watermark_offsets(TopicPartition(topic, a.partition), timeout=10)
                first = a.offset if a.offset >= 0 else high
                last = b.offset if b.offset >= 0 else high
                # covered: nothing was ever deleted, or a retained record precedes the window's first one
                if low > 0 and first <= low:
                    self._gone(c, topic, a.partition, low, high)
                if last > first:
                    plan[a.partition] = (first, last)
            if self.missing:
                return
            total = sum(b - a for a, b in plan.values())
            done = 0
            if not plan:
                return
            c.assign([TopicPartition(topic, p, a) for p, (a, _) in plan.items()])
            open_parts = set(plan)
            deadline = time.monotonic() + 600
            while open_parts and time.monotonic() < deadline:
                msg = c.poll(1.0)
                if msg is None:
                    continue
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        open_parts.discard(msg.partition())
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
                yield p, msg.offset(), msg.timestamp()[1], msg.value()
            if open_parts:
                raise TimeoutError(f"backfill: partitions {sorted(open_parts)} of {topic} not read to the end")
        finally:
            c.close()

    def _gone(self, c: Any, topic: str, partition: int, low: int, high: int) -> None:
        """The log of `partition` starts inside or after the window: name the hours retention removed."""
        from confluent_kafka import TopicPartition

        start_ms, end_ms = int(self.start.timestamp() * 1000), int(self.end.timestamp() * 1000)
        first_ts = end_ms
        if low < high:
            c.assign([TopicPartition(topic, partition, low)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    first_ts = min(end_ms, max(start_ms, m.timestamp()[1]))
                    break
            c.unassign()
        gone = _hours_text(start_ms, max(first_ts, start_ms + 1))
        self.missing = sorted(set(self.missing) | set(gone))
        self.detail.append(f"{topic}[{partition}] starts at offset {low} (retention removed the records before it)")


class S3Bronze:
    """Bronze objects of one topic whose receive hour overlaps [start, end), read in offset order per partition.
    After `frames` is consumed, `missing` names each hour without any object of the topic and each hour an offset
    gap between consecutive objects of a partition falls in (a deleted or never written object)."""

    def __init__(self, s: FlowSettings, start: datetime, end: datetime, progress: Progress | None = None):
        self.s, self.start, self.end, self.progress = s, start, end, progress
        self.store = Store(s)
        self.missing: list[str] = []
        self.detail: list[str] = []
        self._earlier: dict[int, list[bronze.ObjectKey]] = {}  # hour start (ms) -> its objects, for _anchor_before

    def frames(self) -> Iterator[dict[str, Any]]:
        s, c, bucket = self.s, self.store.c, self.store.bucket
        lo, hi = int(self.start.timestamp() * 1000), int(self.end.timestamp() * 1000)
        # one hour either side, so an object missing at the window's edge shows as a gap to its neighbour
        listed = bronze.list_objects(c, bucket, s.backfill_s3_prefix, s.backfill_s3_source, lo - bronze.HOUR_MS,
                                     hi + bronze.HOUR_MS, topic=s.backfill_topic)
        window = set(_hours_text(lo, hi))
        inside = [k for k in listed if f"{k.day}T{k.hour:02d}" in window]
        present = {f"{k.day}T{k.hour:02d}" for k in inside}
        seen: set[tuple[int, int]] = set()  # (partition, offset): a rewritten object may repeat records
        read: dict[str, bronze.ReadObject] = {}
        total, done = len(inside), 0
        for k in inside:
            first = last = None
            for line in bronze.read_object(c, bucket, k.key):
                first = line.offset if first is None else first
                last = line.offset
                if (line.partition, line.offset) in seen:
                    continue
                seen.add((line.partition, line.offset))
                yield line.value
            read[k.key] = bronze.ReadObject(k, first, last)
            done += 1
            if self.progress:
                self.progress(done, total)
        # the neighbours outside the window: the last object before it per partition, the first after it
        objs: list[bronze.ReadObject] = list(read.values())
        by_tp: dict[tuple[str, int], list[bronze.ObjectKey]] = {}
        for k in listed:
            by_tp.setdefault((k.topic, k.partition), []).append(k)
        lo_hour = lo - lo % bronze.HOUR_MS
        unanchored: set[str] = set()
        for keys in by_tp.values():
            before = [k for k in keys if k.key not in read and k.hour_start_ms < lo_hour]
            after = [k for k in keys if k.key not in read and k.hour_start_ms >= lo_hour]
            anchor = before[-1] if before else self._anchor_before(keys[0], lo_hour, unanchored, window)
            if anchor is not None:
                _, end = bronze.offsets_meta(c, bucket, anchor.key)
                if end is None:
                    offs = [ln.offset for ln in bronze.read_object(c, bucket, anchor.key)]
                    end = offs[-1] if offs else None
                objs.append(bronze.ReadObject(anchor, anchor.start_offset, end, end))
            if after:
                objs.append(bronze.ReadObject(after[0], after[0].start_offset, None))
        objs = self._with_end_offsets(objs)
        gaps = bronze.offset_gaps(objs)
        empty = window - present
        quiet = {h for h in empty if self._received_nothing(h, objs, gaps)}
        missing = (empty - quiet) | unanchored
        if quiet:
            self.detail.append(f"no record was received in {', '.join(sorted(quiet))} (offsets continue across)")
        for nxt, first_missing, last_missing in gaps:
            prev = max((o.key for o in objs if o.key.topic == nxt.topic and o.key.partition == nxt.partition
                        and o.key.start_offset < nxt.start_offset), key=lambda k: k.start_offset)
            hrs = set(_hours_text(prev.hour_start_ms, nxt.hour_start_ms + bronze.HOUR_MS)) & window
            if hrs:
                missing |= hrs
                self.detail.append(f"{nxt.topic}[{nxt.partition}] offsets {first_missing}..{last_missing} are in no "
                                   f"object (before {nxt.key.rsplit('/', 1)[-1]})")
        self.missing = sorted(missing)
        if empty - quiet:
            self.detail.append(f"no object of {s.backfill_topic} under "
                               f"{s.backfill_s3_prefix}bronze/{s.backfill_s3_source}/ for "
                               f"{', '.join(sorted(empty - quiet))}")

    def _anchor_before(self, first: bronze.ObjectKey, lo_hour: int, unanchored: set[str],
                       window: set[str]) -> bronze.ObjectKey | None:
        """The last object of `first`'s partition before the window, for a partition with none in the hour before
        it: searched further back, hour by hour, up to `backfill_s3_lookback_hours`. Not needed (None) when `first`
        starts the partition. When none is found, the window's hours up to `first`'s are unaccounted for (an object
        of the partition may be missing there) and go to `unanchored`."""
        c, bucket, s = self.store.c, self.store.bucket, self.s
        covers = 0 if first.start_offset == 0 else bronze.offsets_meta(c, bucket, first.key)[0]
        if (first.start_offset if covers is None else covers) == 0:
            return None
        for back in range(2, s.backfill_s3_lookback_hours + 1):  # the hour right before the window is listed
            h = lo_hour - back * bronze.HOUR_MS
            if h not in self._earlier:  # each hour listed once, however many partitions look back through it
                self._earlier[h] = bronze.list_objects(c, bucket, s.backfill_s3_prefix, s.backfill_s3_source, h,
                                                       h + bronze.HOUR_MS, topic=s.backfill_topic)
            keys = [k for k in self._earlier[h] if k.partition == first.partition]
            if keys:
                return keys[-1]
        hrs = set(_hours_text(lo_hour, first.hour_start_ms + bronze.HOUR_MS)) & window
        if hrs:
            unanchored |= hrs
            self.detail.append(
                f"{first.topic}[{first.partition}] offsets below {first.start_offset if covers is None else covers} "
                f"are in no object of the {s.backfill_s3_lookback_hours} h before the window (first object "
                f"{first.key.rsplit('/', 1)[-1]}); raise COINPULSE_BACKFILL_S3_LOOKBACK_HOURS if the partition was "
                f"quiet longer")
        return None

    def _received_nothing(self, hour: str, objs: list[bronze.ReadObject],
                          gaps: list[tuple[bronze.ObjectKey, int, int]]) -> bool:
        """An hour without objects is proven empty (nothing was received then) when, in every partition, the
        objects on both sides of it continue each other's offsets, or the first object after it starts the
        partition (offset 0). Anything else (no object after it, a gap, an earlier object out of sight) leaves the
        hour missing: erring on the safe side."""
        h_ms = int(datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp() * 1000)
        after_gap = {g[0] for g in gaps}
        by_tp: dict[tuple[str, int], list[bronze.ReadObject]] = {}
        for o in sorted(objs, key=lambda o: o.key.start_offset):
            by_tp.setdefault((o.key.topic, o.key.partition), []).append(o)
        if not by_tp:
            return False
        for tp_objs in by_tp.values():
            nxt = next((o for o in tp_objs if o.key.hour_start_ms > h_ms), None)
            if nxt is None or nxt.key in after_gap:
                return False
            if any(o.key.hour_start_ms < h_ms for o in tp_objs):
                continue  # the previous object is listed and no gap separates them
            covers = nxt.covers_from
            if covers is None and nxt.key.start_offset > 0:
                covers = bronze.offsets_meta(self.store.c, self.store.bucket, nxt.key.key)[0]
            if (nxt.key.start_offset if covers is None else covers) != 0:
                return False
        return True

    def _with_end_offsets(self, objs: list[bronze.ReadObject]) -> list[bronze.ReadObject]:
        """Ask the objects on both sides of a gap between their lines for their offsets metadata (dead letters at
        an edge, or a real gap); objects without a gap are never asked."""
        gaps = bronze.offset_gaps(objs)
        if not gaps:
            return objs
        after = {g[0].key for g in gaps}
        before = {(g[0].topic, g[0].partition, g[1]) for g in gaps}
        out = []
        for o in objs:
            end = o.last_offset if o.last_offset is not None else o.key.start_offset - 1
            if o.key.key in after or (o.end_offset is None and (o.key.topic, o.key.partition, end + 1) in before):
                covers, end_meta = bronze.offsets_meta(self.store.c, self.store.bucket, o.key.key)
                o = bronze.ReadObject(o.key, o.first_offset, o.last_offset,
                                      o.end_offset if o.end_offset is not None else end_meta, covers)
            out.append(o)
        return out


def _source(s: FlowSettings, source: str, start: datetime, end: datetime, progress: Progress | None):
    if source == "kafka":
        return KafkaBronze(s, start, end, s.backfill_topic, progress)
    if source == "s3":
        return S3Bronze(s, start, end, progress)
    raise ValueError(f"unknown source {source!r}: kafka or s3")


def _check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if end <= start:
        raise ValueError(f"empty range: {start} .. {end}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start.second or start.microsecond or end.second or end.microsecond:
        raise ValueError("backfill ranges start and end on whole minutes (candles are rebuilt per minute)")
    return start, end


def rebuild(s: FlowSettings, start: datetime, end: datetime, source: str = "kafka", *, late_s: int = 120,
            progress: Progress | None = None, dry_run: bool = False) -> BackfillResult:
    start, end = _check_range(start, end)
    read_to = end + timedelta(seconds=late_s)
    if read_to > datetime.now(UTC):
        raise IncompleteSource(source, _hours_text(int(start.timestamp() * 1000), int(read_to.timestamp() * 1000)),
                               [f"the range and its {late_s} s of late arrivals end after now"])
    src = _source(s, source, start, read_to, progress)
    r = BackfillResult(source, start.isoformat(), end.isoformat(), dry_run=dry_run)
    stats: Counter = Counter()
    lo_ms, hi_ms = start.timestamp() * 1000, end.timestamp() * 1000
    trades: dict[tuple[str, int], dict[str, Any]] = {}
    for raw in src.frames():
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
    if src.missing:
        log.error("backfill_refused", source=source, start=r.start, end=r.end, missing=src.missing, detail=src.detail)
        raise IncompleteSource(source, src.missing, src.detail)
    r.trades = len(trades)
    r.problems = dict(stats)
    r.silver_rows, r.candles, r.replace = _write(s, start, end, list(trades.values()), dry_run=dry_run)
    log.info("backfill_done", **{k: v for k, v in r.__dict__.items() if k not in ("problems", "replace")},
             problems=r.problems, replace=r.replace)
    return r


def loaded_range(s: FlowSettings, loaded_from: datetime, loaded_to: datetime, source: str = "kafka",
                 progress: Progress | None = None) -> tuple[datetime, datetime] | None:
    """The event-time range (whole minutes) of the trades received in [loaded_from, loaded_to): those in the bronze
    source and those in silver (`received_at`), so a repair chosen by ingestion time covers both what arrived and
    what was written. None when neither has any."""
    loaded_from, loaded_to = _check_range(loaded_from, loaded_to)
    src = _source(s, source, loaded_from, loaded_to, progress)
    lo_ms, hi_ms = loaded_from.timestamp() * 1000, loaded_to.timestamp() * 1000
    times: list[int] = []
    stats: Counter = Counter()
    for raw in src.frames():
        try:
            raw = {**raw, "received_at": received_ms(raw.get("received_at") or 0)}
        except (TypeError, ValueError):
            continue
        if lo_ms <= raw["received_at"] < hi_ms:
            times += [t["trade_timestamp"] for t in trades_of_frame(raw, stats)]
    if src.missing:
        raise IncompleteSource(source, src.missing, src.detail)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        a, b = conn.execute(sql.SQL("SELECT min(trade_timestamp), max(trade_timestamp) FROM {} "
                                    "WHERE received_at >= %s AND received_at < %s").format(_ident(s.trades_table)),
                            (loaded_from, loaded_to)).fetchone()
    lows = [datetime.fromtimestamp(min(times) / 1000, UTC)] if times else []
    highs = [datetime.fromtimestamp(max(times) / 1000, UTC)] if times else []
    lows += [a] if a else []
    highs += [b] if b else []
    if not lows:
        return None
    minute = timedelta(minutes=1)
    return _floor(min(lows), minute), _floor(max(highs), minute) + minute


def _columns(conn: psycopg.Connection, qualified: str) -> list[str]:
    schema, table = qualified.split(".", 1)
    return [c for (c,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (schema, table)).fetchall()]


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (t - epoch) // step * step


def _write(s: FlowSettings, start: datetime, end: datetime, trades: list[dict[str, Any]], *,
           dry_run: bool = False) -> tuple[int, int, dict[str, dict[str, int]]]:
    rng = {"lo": start, "hi": end}
    count_trades = sql.SQL("SELECT count(*) FROM {} WHERE trade_timestamp >= %(lo)s AND trade_timestamp < %(hi)s")
    count_candles = sql.SQL('SELECT count(*) FROM {} WHERE "interval" = %(iv)s AND bucket_start >= %(lo)s '
                            "AND bucket_start < %(hi)s")
    delete = sql.SQL('DELETE FROM {} WHERE "interval" = %(iv)s AND bucket_start >= %(lo)s AND bucket_start < %(hi)s')
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM ({}) c")
    ranges = {"1m": {**rng, "iv": "1m"}}
    for iv, step in ROLLUPS.items():
        ranges[iv] = {"lo": _floor(start, step), "hi": _floor(end - timedelta(microseconds=1), step) + step, "iv": iv,
                      "step": step}
    trades_t, table = _ident(s.trades_table), _ident(s.candles_table)
    with psycopg.connect(s.pg_dsn()) as conn:  # one transaction: committed at the end of the block, or rolled back
        replace = {s.trades_table: {"now": conn.execute(count_trades.format(trades_t), rng).fetchone()[0]}}
        for iv, r in ranges.items():
            replace[f"{s.candles_table} {iv}"] = {"now": conn.execute(count_candles.format(table), r).fetchone()[0]}
        tcols = [c for c in TRADE_COLUMNS if c in set(_columns(conn, s.trades_table))]
        conn.execute(sql.SQL("DELETE FROM {} WHERE trade_timestamp >= %(lo)s AND trade_timestamp < %(hi)s").format(
            trades_t), rng)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(trades_t, sql.SQL(", ").join(map(sql.Identifier, tcols)))
        with conn.cursor().copy(copy_sql) as cp:
            for t in trades:
                cp.write_row([datetime.fromtimestamp(t[c] / 1000, UTC) if c in TIME_COLUMNS else t[c] for c in tcols])
        ccols = set(_columns(conn, s.candles_table))
        select_cols = ["market", "bucket_start", "open", "high", "low", "close", "volume", "quote_volume", "vwap",
                       "trade_count", "buy_volume", "sell_volume", "first_trade_at", "last_trade_at", "interval",
                       "revision", "emitted_at"]
        cols = [c for c in select_cols if c in ccols]
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        candles = 0
        for iv, r in ranges.items():  # 1m first: the rollups are computed from it
            conn.execute(delete.format(table), r)
            query = sql.SQL(CANDLES).format(trades=trades_t) if iv == "1m" else sql.SQL(ROLLUP).format(candles=table)
            candles += conn.execute(insert.format(table, names, names, query), r).rowcount
        replace[s.trades_table]["rebuilt"] = conn.execute(count_trades.format(trades_t), rng).fetchone()[0]
        for iv, r in ranges.items():
            replace[f"{s.candles_table} {iv}"]["rebuilt"] = conn.execute(count_candles.format(table), r).fetchone()[0]
        if dry_run:
            conn.rollback()
        return len(trades), candles, replace
