"""Rebuild the 1-minute mentions (`gold.mentions_1m`: counts, distinct posts and comments, sentiment) for [from, to)
from the community documents, with the rules the candle agent counts them with (`coinpulse_mentions`).

Source: the agent's own input, `dc.post` and `dc.comment` in Kafka (Avro; each record one version of a document,
its offset the version). The community's bronze (`dc.raw`, and its S3 archive) holds the fetched pages as
received (HTML list and view pages, the comment endpoint's JSON); turning those into posts and comments is the
crawler's parsing and merging, which the flows cannot import, so it is not a source here (see `UnsupportedSource`).

Which records: those with a Kafka timestamp in [from - lead_s, to + late_s). A document's versions are fetched
after it was written, so a window starting `lead_s` (the agent's largest allowed clock skew, 300 s) before `from`
holds the first version of every document of the range; `late_s` (default 3 h, the agent's mention lateness)
takes in the later versions and the comments the agent still accepts. Coverage as in the trade backfill: every
partition of both topics must still hold the start of the window (retention removed nothing after it), else
`IncompleteSource` names the hours that are missing and nothing changes.

The rules, as the agent applies them (coinpulse_mentions.documents): a record is read as a document
(`post_document` / `comment_document`; an unreadable one is counted, as the agent dead-letters it), one whose
created_at lies more than `max_future_s` ahead of its record's timestamp is counted as `future_timestamp` (the
agent dead-letters it; it checks against its wall clock, which is at or after the record's timestamp), the
document's minute is created_at floored to the UTC minute and must lie in [from, to), `doc_hits` gives its hits
per market with the record's offset as version, and `MinuteMentions` keeps one version per document and minute
(`replaces`) and makes each minute's record. The rebuild has no lateness cut: a document the agent dropped as late
(later than its lateness) is counted here, which is what a repair is for.

Then, in one transaction, the range's rows are deleted and the rebuilt ones upserted on (market, bucket_start),
revision 0, emitted_at now (a minute the agent revises later is simply overwritten by the sink with the agent's
row). Any number of runs converges to the same rows. A dry run rolls back and reports the rows now and after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import DC_COMMENT, DC_POST
from coinpulse_mentions import (
    BadDocument,
    MentionMatcher,
    MinuteMentions,
    comment_document,
    default_matcher,
    document_hits,
    minute_of,
    post_document,
)
from psycopg import sql

from coinpulse_flows.backfill import (
    IncompleteSource,
    KafkaBronze,
    Progress,
    _check_range,
    _columns,
    _hours_text,
    _ident,
)
from coinpulse_flows.settings import FlowSettings

log = get_logger("coinpulse.flows.mention_backfill")

LATE_S = 3 * 3600  # the candle agent's COINPULSE_CANDLE_MENTION_LATENESS_MS default
LEAD_S = 300  # the candle agent's COINPULSE_CANDLE_MAX_FUTURE_SKEW_S default
MAX_FUTURE_S = 300.0
MENTION_COLUMNS = ("market", "bucket_start", "mentions", "posts", "comments", "positive", "negative", "sentiment",
                   "revision", "emitted_at")


class UnsupportedSource(ValueError):
    """A source the mention rebuild cannot read (the S3 bronze archive holds pages, not documents)."""


class DocRecord(NamedTuple):
    """One source record: a decoded dc.post (`kind` "post") or dc.comment ("comment") value and where it was."""

    kind: str
    partition: int
    offset: int
    timestamp: int | None  # Kafka timestamp, epoch ms
    value: dict[str, Any]


@dataclass
class MentionBackfillResult:
    source: str
    start: str
    end: str
    records: int = 0
    documents: int = 0  # records whose document's minute lies in the range
    hits: int = 0  # (document version, market) pairs counted
    minutes: int = 0  # (market, minute) rows rebuilt
    versions_unchanged: int = 0  # document versions that changed nothing (same hits, body-less re-crawl, replay)
    problems: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    replace: dict[str, dict[str, int]] = field(default_factory=dict)


def rebuild_minutes(records: Iterable[DocRecord], start_ms: int, end_ms: int, *,
                    matcher: MentionMatcher | None = None, max_future_s: float = MAX_FUTURE_S,
                    stats: Counter | None = None) -> tuple[dict[tuple[str, int], dict[str, Any]], Counter]:
    """The mention records (revision 0, no emitted_at) of every (market, minute) in [start_ms, end_ms), from records
    given in offset order per topic partition. Pure: the rebuild's rules, tested against the agent's engine."""
    matcher = matcher or default_matcher()
    stats = stats if stats is not None else Counter()
    minutes = MinuteMentions()
    max_future_ms = int(max_future_s * 1000)
    for r in records:
        try:
            d = post_document(r.value) if r.kind == "post" else comment_document(r.value)
        except BadDocument:
            stats["bad_document"] += 1
            continue
        if r.timestamp is not None and r.timestamp >= 0 and d.ts - r.timestamp > max_future_ms:
            stats["future_timestamp"] += 1
            continue
        if not start_ms <= minute_of(d.ts) < end_ms:
            continue
        stats["documents"] += 1
        for h in document_hits(matcher, d, r.offset):
            stats["hits"] += 1
            minutes.add(h)
    stats["versions_unchanged"] += minutes.unchanged
    return minutes.records(), stats


def _kafka_records(s: FlowSettings, start: datetime, end: datetime, topics: dict[str, str],
                   progress: Progress | None, stats: Counter, missing: list[str], detail: list[str]
                   ) -> Iterator[DocRecord]:
    from coinpulse_common.avro import TopicCodec

    for kind, topic in topics.items():
        schema_topic = DC_POST if kind == "post" else DC_COMMENT
        src = KafkaBronze(s, start, end, topic, progress, schema_topic=schema_topic)
        codec = TopicCodec(topic, s, schema_topic=schema_topic)
        for partition, offset, ts, raw in src.records():
            stats["records"] += 1
            if raw is None:
                stats["null_value"] += 1
                continue
            try:
                value = codec.decode(raw)
            except Exception:  # noqa: BLE001 - counted, as the agent dead-letters it
                stats["undecodable"] += 1
                continue
            yield DocRecord(kind, partition, offset, ts, value)
        missing.extend(h for h in src.missing if h not in missing)
        detail.extend(src.detail)


def rebuild(s: FlowSettings, start: datetime, end: datetime, source: str = "kafka", *, late_s: int = LATE_S,
            lead_s: int = LEAD_S, max_future_s: float = MAX_FUTURE_S, post_topic: str = DC_POST,
            comment_topic: str = DC_COMMENT, progress: Progress | None = None, dry_run: bool = False,
            matcher: MentionMatcher | None = None) -> MentionBackfillResult:
    if source != "kafka":
        raise UnsupportedSource(
            f"mentions are rebuilt from kafka ({post_topic}, {comment_topic}), not {source!r}: the S3 bronze archive "
            "holds dc.raw, the fetched pages, which only the crawler's parsers turn into posts and comments")
    start, end = _check_range(start, end)
    read_from, read_to = start - timedelta(seconds=lead_s), end + timedelta(seconds=late_s)
    if read_to > datetime.now(UTC):
        raise IncompleteSource(source, _hours_text(int(start.timestamp() * 1000), int(read_to.timestamp() * 1000)),
                               [f"the range and its {late_s} s of later versions and comments end after now "
                                "(give a smaller --late-s to rebuild recent minutes)"])
    r = MentionBackfillResult(source, start.isoformat(), end.isoformat(), dry_run=dry_run)
    stats: Counter = Counter()
    missing: list[str] = []
    detail: list[str] = []
    recs = _kafka_records(s, read_from, read_to, {"post": post_topic, "comment": comment_topic}, progress, stats,
                          missing, detail)
    rows, stats = rebuild_minutes(recs, int(start.timestamp() * 1000), int(end.timestamp() * 1000),
                                  matcher=matcher, max_future_s=max_future_s, stats=stats)
    if missing:
        log.error("mention_backfill_refused", source=source, start=r.start, end=r.end, missing=missing, detail=detail)
        raise IncompleteSource(source, sorted(missing), detail)
    r.records, r.documents, r.hits = stats.pop("records", 0), stats.pop("documents", 0), stats.pop("hits", 0)
    r.versions_unchanged = stats.pop("versions_unchanged", 0)
    r.problems = {k: v for k, v in stats.items() if v}
    r.minutes, r.replace = write_minutes(s, start, end, list(rows.values()), dry_run=dry_run)
    log.info("mention_backfill_done", **{k: v for k, v in r.__dict__.items() if k not in ("problems", "replace")},
             problems=r.problems, replace=r.replace)
    return r


def write_minutes(s: FlowSettings, start: datetime, end: datetime, rows: list[dict[str, Any]], *,
                  dry_run: bool = False) -> tuple[int, dict[str, dict[str, int]]]:
    """Replace the mention rows of [start, end) with `rows` in one transaction (upserted on market, bucket_start)."""
    table = _ident(s.mentions_table)
    rng = {"lo": start, "hi": end}
    count = sql.SQL("SELECT count(*) FROM {} WHERE bucket_start >= %(lo)s AND bucket_start < %(hi)s").format(table)
    now = datetime.now(UTC)
    with psycopg.connect(s.pg_dsn()) as conn:  # one transaction: committed at the end of the block, or rolled back
        replace = {s.mentions_table: {"now": conn.execute(count, rng).fetchone()[0]}}
        have = set(_columns(conn, s.mentions_table))
        cols = [c for c in MENTION_COLUMNS if c in have]
        conn.execute(sql.SQL("DELETE FROM {} WHERE bucket_start >= %(lo)s AND bucket_start < %(hi)s").format(table),
                     rng)
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        upsert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (market, bucket_start) DO UPDATE SET {}").format(
            table, names, sql.SQL(", ").join([sql.Placeholder()] * len(cols)),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                               for c in cols if c not in ("market", "bucket_start")))
        with conn.cursor() as cur:
            cur.executemany(upsert, [[_value(row, c, now) for c in cols] for row in rows])
        replace[s.mentions_table]["rebuilt"] = conn.execute(count, rng).fetchone()[0]
        if dry_run:
            conn.rollback()
    return len(rows), replace


def _value(row: dict[str, Any], col: str, now: datetime) -> Any:
    if col == "bucket_start":
        return datetime.fromtimestamp(row[col] / 1000, UTC)
    if col == "emitted_at":
        return now
    if col == "revision":
        return 0
    return row[col]
