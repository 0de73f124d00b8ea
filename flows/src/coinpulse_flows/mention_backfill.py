"""Rebuild the 1-minute mentions (`gold.mentions_1m`: counts, distinct posts and comments, sentiment) for [from, to)
from the community documents, with the rules the candle agent counts them with (`coinpulse_mentions`).

Sources:

- `kafka`: the agent's own input, `dc.post` and `dc.comment` in Kafka (Avro; each record one version of a document,
  its offset the version);
- `raw` (`dc.raw` in Kafka) and `s3` (its bronze copy, `bronze/dc/...` as the sink's bronze S3 sink writes it,
  read by `S3Bronze` with `coinpulse_common.bronze`): the fetched pages, turned into the same dc.post / dc.comment
  values by the crawler's parsers and record builders (`coinpulse_dcinside.raw`; see "From the fetched pages").

Which records: those with a Kafka timestamp in [from - lead_s, to + late_s) (bronze: fetched in that window). A
document's versions are fetched after it was written, so a window starting `lead_s` (the agent's largest allowed
clock skew, 300 s) before `from` holds the first version of every document of the range; `late_s` (default 3 h,
the agent's mention lateness) takes in the later versions and the comments the agent still accepts. Coverage as in
the trade backfill: every partition of every topic read must still hold the start of the window (retention removed
nothing after it; S3: an object for every hour of the window and no offset missing between consecutive objects),
else `IncompleteSource` names the hours that are missing and nothing changes.

The rules, as the agent applies them (coinpulse_mentions.documents): a record is read as a document
(`post_document` / `comment_document`; an unreadable one is counted, as the agent dead-letters it), one whose
created_at lies more than `max_future_s` ahead of its record's timestamp is counted as `future_timestamp` (the
agent dead-letters it; it checks against its wall clock, which is at or after the record's timestamp), the
document's minute is created_at floored to the UTC minute and must lie in [from, to), `doc_hits` gives its hits
per market with the record's offset as version, and `MinuteMentions` keeps one version per document and minute
(`replaces`) and makes each minute's record. The rebuild has no lateness cut: a document the agent dropped as late
(later than its lateness) is counted here, which is what a repair is for.

From the fetched pages (`raw`, `s3`): every list row is a body-less version of its post, every view page a version
with its body, every comment of a comment answer a version of that comment (parsed against its post's time, from a
view or list row of the same post). The versions are ordered by fetch time, then list < view < comment (the
crawler's order within a cycle), then read order (offset order within a partition), and numbered in that order;
the record timestamp for the future check is the fetch time. What this gives the same minutes as the crawler's
dc.post / dc.comment for:

- a post's versions in dc.post are its view pages of the cycles that emitted it, or its list row when the view
  could not be read or answered "deleted" (a deleted post keeps its last record otherwise): the list row versions
  here are body-less, so after a view they change nothing (`replaces`), and before one they count as that record
  does; a view fetched by a cycle that emitted nothing (a known post's re-check) says what the post said before;
- a comment is in dc.comment when first seen and when its deletion changes; re-fetches in between say the same.

Where they can differ (not guaranteed, tested only as far as stated): a post or comment edited between two
fetches whose later fetch emitted no record (a re-check's view, a comment answer re-read while its post was
updated) counts here with the later text; a list row whose title differs from the view's; a version fetched in the
window but emitted (produced) after its end, or the other way round; a document stamped more than `max_future_s`
after the page's fetch but not after the record's timestamp. Comment answers whose post's time is not in the
window yet are kept until it is (memory: those answers).

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
from coinpulse_common import bronze
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import DC_COMMENT, DC_POST, DC_RAW
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.raw import FETCH_ORDER, NeedsPostTime, page_records
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
    S3Bronze,
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
SOURCES = ("kafka", "raw", "s3")  # dc.post + dc.comment; dc.raw in Kafka; dc.raw's bronze objects in S3
# author hashes are no part of a document: the pages' records are built with a fixed key, which fills the field only
_PSEUDO = Pseudonymizer("coinpulse-mention-rebuild")
MENTION_COLUMNS = ("market", "bucket_start", "mentions", "posts", "comments", "positive", "negative", "sentiment",
                   "revision", "emitted_at")


class UnsupportedSource(ValueError):
    """A source the mention rebuild does not know (not one of `SOURCES`)."""


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
    pages: dict[str, int] = field(default_factory=dict)  # raw, s3: the fetched pages read, by kind
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


def _decoded(s: FlowSettings, start: datetime, end: datetime, topic: str, schema_topic: str,
             progress: Progress | None, stats: Counter, missing: list[str], detail: list[str]
             ) -> Iterator[tuple[int, int, int | None, dict[str, Any]]]:
    """(partition, offset, Kafka timestamp, decoded value) of one topic's records in [start, end); what the log no
    longer holds goes to `missing` / `detail`."""
    from coinpulse_common.avro import TopicCodec

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
        yield partition, offset, ts, value
    missing.extend(h for h in src.missing if h not in missing)
    detail.extend(src.detail)


def _kafka_records(s: FlowSettings, start: datetime, end: datetime, topics: dict[str, str],
                   progress: Progress | None, stats: Counter, missing: list[str], detail: list[str]
                   ) -> Iterator[DocRecord]:
    for kind, topic in topics.items():
        schema_topic = DC_POST if kind == "post" else DC_COMMENT
        for partition, offset, ts, value in _decoded(s, start, end, topic, schema_topic, progress, stats, missing,
                                                     detail):
            yield DocRecord(kind, partition, offset, ts, value)


def raw_doc_records(pages: Iterable[dict[str, Any]], start_ms: int, end_ms: int,
                    stats: Counter | None = None) -> list[DocRecord]:
    """The document versions of fetched pages (`dc.raw` values, in offset order per partition) fetched in
    [start_ms, end_ms), numbered in fetch order (module docstring): what `rebuild_minutes` takes. Pure."""
    stats = stats if stats is not None else Counter()
    found: list[tuple[tuple[int, int, int, int], str, dict[str, Any]]] = []
    post_ms: dict[tuple[str, int], int] = {}  # (gallery, post_no) -> created_at, from a view or a list row
    waiting: list[tuple[int, int, dict[str, Any]]] = []  # comment answers whose post's time is not known yet

    def add(seq: int, fetched: int, value: dict[str, Any], post_time: int | None = None) -> None:
        recs = page_records(value, _PSEUDO, fetched, post_time)
        if not recs.read:
            stats["pages:not_read"] += 1  # a 403/429 or gone answer: the crawler parses none either
            return
        stats[f"pages:{recs.kind}"] += 1
        stats["parse_alarms"] += len(recs.alarms)
        order = FETCH_ORDER[recs.kind]
        for i, v in enumerate(recs.posts):
            post_ms.setdefault((v["gallery"], v["post_no"]), v["created_at"])
            found.append(((fetched, order, seq, i), "post", v))
        found.extend(((fetched, order, seq, i), "comment", v) for i, v in enumerate(recs.comments))

    for seq, value in enumerate(pages):
        try:
            fetched = bronze.event_ms(value, None)
        except ValueError:
            stats["no_fetch_time"] += 1
            continue
        if not start_ms <= fetched < end_ms:
            continue
        try:
            add(seq, fetched, value, _post_time(post_ms, value))
        except NeedsPostTime:
            waiting.append((seq, fetched, value))
    for seq, fetched, value in waiting:
        try:
            add(seq, fetched, value, _post_time(post_ms, value))
        except NeedsPostTime:
            stats["comment_pages_without_post"] += 1
    found.sort(key=lambda f: f[0])
    return [DocRecord(kind, 0, version, order[0], v) for version, (order, kind, v) in enumerate(found)]


def _post_time(post_ms: dict[tuple[str, int], int], value: dict[str, Any]) -> int | None:
    if value.get("kind") != "comment":
        return None
    return post_ms.get((str(value.get("gallery")), value.get("post_no")))


def _raw_pages(s: FlowSettings, source: str, start: datetime, end: datetime, raw_topic: str,
               progress: Progress | None, stats: Counter, missing: list[str], detail: list[str]
               ) -> Iterator[dict[str, Any]]:
    if source == "raw":
        for _, _, _, value in _decoded(s, start, end, raw_topic, DC_RAW, progress, stats, missing, detail):
            yield value
        return
    # the bronze objects of dc.raw: the S3 reader of the trade backfill, pointed at the community's topic and source
    src = S3Bronze(s.model_copy(update={"backfill_topic": raw_topic, "backfill_s3_source": bronze.source_of(DC_RAW)}),
                   start, end, progress)
    for value in src.frames():
        stats["records"] += 1
        yield value
    missing.extend(h for h in src.missing if h not in missing)
    detail.extend(src.detail)


def rebuild(s: FlowSettings, start: datetime, end: datetime, source: str = "kafka", *, late_s: int = LATE_S,
            lead_s: int = LEAD_S, max_future_s: float = MAX_FUTURE_S, post_topic: str = DC_POST,
            comment_topic: str = DC_COMMENT, raw_topic: str = DC_RAW, progress: Progress | None = None,
            dry_run: bool = False, matcher: MentionMatcher | None = None) -> MentionBackfillResult:
    if source not in SOURCES:
        raise UnsupportedSource(f"mentions are rebuilt from {', '.join(SOURCES)} ({post_topic} and {comment_topic}; "
                                f"{raw_topic} in Kafka; its bronze objects in S3), not {source!r}")
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
    recs: Iterable[DocRecord]
    if source == "kafka":
        recs = _kafka_records(s, read_from, read_to, {"post": post_topic, "comment": comment_topic}, progress, stats,
                              missing, detail)
    else:
        pages = _raw_pages(s, source, read_from, read_to, raw_topic, progress, stats, missing, detail)
        recs = raw_doc_records(pages, int(read_from.timestamp() * 1000), int(read_to.timestamp() * 1000), stats)
    rows, stats = rebuild_minutes(recs, int(start.timestamp() * 1000), int(end.timestamp() * 1000),
                                  matcher=matcher, max_future_s=max_future_s, stats=stats)
    if missing:
        log.error("mention_backfill_refused", source=source, start=r.start, end=r.end, missing=missing, detail=detail)
        raise IncompleteSource(source, sorted(missing), detail)
    r.records, r.documents, r.hits = stats.pop("records", 0), stats.pop("documents", 0), stats.pop("hits", 0)
    r.versions_unchanged = stats.pop("versions_unchanged", 0)
    r.pages = {k.split(":", 1)[1]: stats.pop(k) for k in sorted(stats) if k.startswith("pages:")}
    r.problems = {k: v for k, v in stats.items() if v}
    r.minutes, r.replace = write_minutes(s, start, end, list(rows.values()), dry_run=dry_run)
    log.info("mention_backfill_done", **{k: v for k, v in r.__dict__.items() if k not in ("problems", "replace", "pages")},
             problems=r.problems, replace=r.replace, pages=r.pages)
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
