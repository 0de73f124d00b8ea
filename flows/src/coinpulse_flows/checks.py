"""Data checks. Each returns a list of readable problems (empty = healthy); the flow fails with all of them.

- candle gaps: minutes in which silver trades exist but no 1-minute candle does (closed minutes only);
- crawl freshness: the newest record on the crawl topic is older than `crawl_max_age_minutes`;
- consumer lag: a consumer group is more than `lag_max` records behind on any topic;
- retention overrun: a consumer group's committed offset is below its partition's log start offset, so the
  records in between expired before the group read them and it resumes past them (`auto.offset.reset=earliest`
  skips them without a word; lag alone cannot see it). Checked with the lag, over the same groups (every group
  by default: the candle agent, Connect's connect-* groups, the bronze sink), and by `retention_overrun` alone;
  each overrun is also a Prometheus gauge (`coinpulse_consumer_records_lost`) and an error log line;
- tier sizes: bytes and objects per tier, and PostgreSQL partitions / S3 objects older than their tier allows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from coinpulse_common.logging import get_logger
from confluent_kafka import TopicPartition
from prometheus_client import Gauge
from psycopg import sql

from coinpulse_flows import layout
from coinpulse_flows.partitions import discover
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store

log = get_logger("coinpulse.flows.checks")
# set in a flow-run process and served by `coinpulse_flows serve` (flows.metrics): the value of the latest check
RECORDS_LOST = Gauge(
    "coinpulse_consumer_records_lost", "records between a consumer group's committed offset and the partition's log "
    "start offset: expired before the group read them (0 when none)", ["group", "topic", "partition"],
    multiprocess_mode="mostrecent")


def _ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def candle_gaps(s: FlowSettings, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    q = sql.SQL("""
        SELECT t.market, date_trunc('minute', t.trade_timestamp) AS minute, count(*)
        FROM {trades} t
        WHERE t.trade_timestamp >= %(lo)s AND t.trade_timestamp < %(hi)s
          AND NOT EXISTS (SELECT 1 FROM {candles} c WHERE c."interval" = '1m' AND c.market = t.market
                          AND c.bucket_start = date_trunc('minute', t.trade_timestamp))
        GROUP BY 1, 2 ORDER BY 2, 1""").format(trades=_ident(s.trades_table), candles=_ident(s.candles_table))
    hi = now.replace(second=0, microsecond=0) - timedelta(minutes=s.check_grace_minutes)
    lo = hi - timedelta(minutes=s.check_window_minutes)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        rows = conn.execute(q, {"lo": lo, "hi": hi}).fetchall()
    if not rows:
        return []
    sample = ", ".join(f"{m} {b:%Y-%m-%d %H:%M} ({n} trades)" for m, b, n in rows[:5])
    return [f"candle gaps: {len(rows)} market-minutes have trades but no candle in {s.candles_table} "
            f"between {lo:%H:%M} and {hi:%H:%M} UTC, e.g. {sample}"]


def _newest_timestamp_ms(s: FlowSettings, topic: str) -> int | None:
    from coinpulse_common.kafka import admin, consumer

    md = admin(s).list_topics(topic, timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        raise RuntimeError(f"topic {topic} does not exist")
    c = consumer(f"coinpulse-flows-check-{int(time.time() * 1000)}", s, **{"enable.auto.commit": False})
    newest = None
    try:
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi <= lo:
                continue
            c.assign([TopicPartition(topic, p, hi - 1)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    ts = msg.timestamp()[1]
                    newest = ts if newest is None else max(newest, ts)
                    break
    finally:
        c.close()
    return newest


def crawl_freshness(s: FlowSettings, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    newest = _newest_timestamp_ms(s, s.crawl_topic)
    if newest is None:
        return [f"crawl freshness: {s.crawl_topic} holds no record at all"]
    age_min = (now.timestamp() * 1000 - newest) / 60_000
    if age_min > s.crawl_max_age_minutes:
        at = datetime.fromtimestamp(newest / 1000, UTC)
        return [f"crawl freshness: newest {s.crawl_topic} record is {age_min:.0f} min old ({at:%Y-%m-%d %H:%M} UTC), "
                f"limit {s.crawl_max_age_minutes} min"]
    return []


@dataclass(frozen=True)
class GroupOffset:
    group: str
    topic: str
    partition: int
    committed: int  # the next offset the group will read
    log_start: int  # the oldest offset the partition still holds
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)

    @property
    def lost(self) -> int:
        return max(0, self.log_start - self.committed)


def group_offsets(s: FlowSettings) -> tuple[list[str], list[GroupOffset]]:
    """The checked groups (`lag_groups`, or every group) and each committed offset of theirs with its partition's
    bounds; offsets of topics that no longer exist are left out."""
    from coinpulse_common.kafka import admin, consumer
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = admin(s)
    groups = s.lag_groups or [g.group_id for g in a.list_consumer_groups(request_timeout=10).result().valid]
    existing = set(a.list_topics(timeout=10).topics)
    probe = consumer(f"coinpulse-flows-lag-{int(time.time() * 1000)}", s)
    out: list[GroupOffset] = []
    try:
        for g in groups:
            fut = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], request_timeout=10)[g]
            for tp in fut.result().topic_partitions:
                if tp.offset < 0 or tp.topic not in existing:
                    continue
                lo, hi = probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                out.append(GroupOffset(g, tp.topic, tp.partition, tp.offset, lo, hi))
    finally:
        probe.close()
    return groups, out


def overrun_problems(offsets: list[GroupOffset]) -> list[str]:
    """One problem per partition a group overran (and the gauge and a log line for every partition checked)."""
    problems = []
    for o in offsets:
        RECORDS_LOST.labels(o.group, o.topic, str(o.partition)).set(o.lost)
        if not o.lost:
            continue
        log.error("retention_overrun", group=o.group, topic=o.topic, partition=o.partition, committed=o.committed,
                  log_start=o.log_start, records_lost=o.lost,
                  hint="the group was down longer than the topic's retention: rebuild the range from bronze")
        problems.append(f"retention overrun: group {o.group} lost {o.lost} records of {o.topic} partition "
                        f"{o.partition} (offsets {o.committed}..{o.log_start - 1} expired before it read them; "
                        f"committed {o.committed}, log start {o.log_start})")
    return problems


def retention_overrun(s: FlowSettings) -> list[str]:
    return overrun_problems(group_offsets(s)[1])


def consumer_lag(s: FlowSettings) -> tuple[dict[str, int], list[str]]:
    """Lag per group, and the problems: groups more than `lag_max` behind on a topic, and retention overruns."""
    groups, offsets = group_offsets(s)
    lags = dict.fromkeys(groups, 0)
    per_topic: dict[tuple[str, str], int] = defaultdict(int)
    for o in offsets:
        lags[o.group] += o.lag
        per_topic[(o.group, o.topic)] += o.lag
    problems = [f"consumer lag: group {g} is {lag} records behind on {topic} (limit {s.lag_max})"
                for (g, topic), lag in per_topic.items() if lag > s.lag_max]
    return lags, problems + overrun_problems(offsets)


def tier_sizes(s: FlowSettings, store: Store, now: datetime | None = None) -> tuple[dict, list[str]]:
    today = (now or datetime.now(UTC)).date()
    sizes: dict[str, dict[str, float]] = {"postgres": defaultdict(float), "s3": defaultdict(float),
                                          "local": defaultdict(float)}
    problems = []
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        for p in discover(conn, s.tier_schemas):
            sizes["postgres"][p.table] += p.size_bytes
            if p.age_days(today) > s.tier_after_days + s.tier_slack_days:
                problems.append(f"tier sizes: {p.schema}.{p.name} ({p.day}) is {p.age_days(today)} days old, "
                                f"PostgreSQL keeps {s.tier_after_days}: tiering is behind")
    stale = 0
    for o in store.list(s.tier_prefix):
        table = layout.table_of_key(o.key, s.tier_prefix)
        day = layout.day_of_key(o.key)
        sizes["s3"][table or o.key.split("/", 1)[0]] += o.size
        if day and (today - day).days > s.archive_after_days + 31 + s.tier_slack_days:
            stale += 1
    if stale:
        problems.append(f"tier sizes: {stale} S3 objects are older than {s.archive_after_days} days plus a month: "
                        "archiving is behind")
    if s.archive_dir.is_dir():
        for f in s.archive_dir.rglob("*.parquet"):
            sizes["local"][f.parent.parent.name] += f.stat().st_size
    return {k: dict(v) for k, v in sizes.items()}, problems
