"""Bronze objects: the pure rules of the S3 sink (no Kafka, no S3). The key layout and the line format are defined
once in `coinpulse_common.bronze` (the backfill reads them from there); this module batches records into objects.

Each object holds consecutive records of one topic-partition from one hour (UTC, by the record's receive time),
as JSON lines, and is named after its first record:

    [<ns>/]bronze/<source>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<start_offset>.jsonl

An object closes when the next record belongs to another hour, or at `max_records` / `max_bytes`, or when it has
been open for `max_age_s`. Offsets are committed only after the object is stored, and the name depends only on the
first record, so a retry after a crash rewrites the same key (a superset or a prefix of the earlier content, the
rest following in later objects): objects never overlap and nothing is lost.

An object's `covers-from` metadata says where the previous object's account ends: the offsets between it and the
object's first record hold no data record. They are dead letters, transaction markers (the crawler and ingest write
in transactions, and each commit takes an offset) or aborted records. Within one assignment the batcher knows this
because it saw every record in between. At the start of an assignment the sink says where its committed position
was (`resume`), but only when that position is still in the log: after a retention overrun the jump must stay
visible to a reader as a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# the layout and the line format are shared with the flows' backfill, which reads what this sink writes
from coinpulse_common.bronze import (
    TIME_FIELDS,
    event_ms,
    hour_of,
    json_line,
    object_key,
    source_of,
    write_metadata,
)

__all__ = ["TIME_FIELDS", "Batch", "Batcher", "event_ms", "hour_of", "json_line", "object_key", "source_of",
           "write_metadata"]


@dataclass
class Batch:
    topic: str
    partition: int
    source: str
    day: str
    hour: int
    start_offset: int
    end_offset: int
    opened_at: float
    lines: list[bytes] = field(default_factory=list)
    size_bytes: int = 0
    covers_from: int | None = None  # first offset it accounts for, when dead letters precede its first record

    def key(self, prefix: str) -> str:
        return object_key(prefix, self.source, self.day, self.hour, self.topic, self.partition, self.start_offset)

    def body(self) -> bytes:
        return b"".join(self.lines)

    def metadata(self) -> dict[str, str]:
        return write_metadata(self.end_offset, self.records, self.covers_from)

    @property
    def records(self) -> int:
        return len(self.lines)


class Batcher:
    """Open objects per topic-partition; `add` and `due` return the objects ready to be written."""

    def __init__(self, max_records: int, max_bytes: int, max_age_s: float):
        self.max_records, self.max_bytes, self.max_age_s = max_records, max_bytes, max_age_s
        self.open: dict[tuple[str, int], Batch] = {}
        # per partition, the first offset the next object accounts for, when that is before its first record:
        # the end of the previous object + 1, the first dead letter while no object was open, or the committed
        # position an assignment resumed from (a reader proving the archive complete then tells transaction
        # markers and dead letters at an object's edge from a lost object)
        self.skipped: dict[tuple[str, int], int] = {}

    def add(self, topic: str, partition: int, offset: int, source: str, ms: int, line: bytes,
            now: float) -> list[Batch]:
        ready: list[Batch] = []
        day, hour = hour_of(ms)
        tp = (topic, partition)
        b = self.open.get(tp)
        if b is not None and (b.day, b.hour) != (day, hour):
            ready.append(self._close(tp))
            b = None
        if b is None:
            covers = self.skipped.pop(tp, None)
            b = self.open[tp] = Batch(topic, partition, source, day, hour, offset, offset, now,
                                      covers_from=covers if covers is not None and covers < offset else None)
        b.lines.append(line)
        b.size_bytes += len(line)
        b.end_offset = offset
        if b.records >= self.max_records or b.size_bytes >= self.max_bytes:
            ready.append(self._close(tp))
        return ready

    def _close(self, tp: tuple[str, int]) -> Batch:
        """Close the partition's open object; the next one accounts for everything after it."""
        b = self.open.pop(tp)
        self.skipped[tp] = b.end_offset + 1
        return b

    def resume(self, topic: str, partition: int, offset: int) -> None:
        """The first record of an assignment comes after `offset`, the committed position, which is still in the
        log: the offsets in between hold no data record (read_committed skips markers and aborted records)."""
        if (topic, partition) not in self.open:
            self.skipped.setdefault((topic, partition), offset)

    def skip(self, topic: str, partition: int, offset: int) -> bool:
        """A record that goes to the dead-letter topic instead: covered by the open object's commit if any.

        Returns False when no object is open (the caller commits past it on its own)."""
        b = self.open.get((topic, partition))
        if b is None:
            self.skipped.setdefault((topic, partition), offset)
            return False
        b.end_offset = offset
        return True

    def due(self, now: float) -> list[Batch]:
        tps = [tp for tp, b in self.open.items() if now - b.opened_at >= self.max_age_s]
        return [self._close(tp) for tp in tps]

    def drop(self, topic: str, partition: int) -> None:
        self.open.pop((topic, partition), None)
        self.skipped.pop((topic, partition), None)

    def retry_from(self, b: Batch) -> None:
        """`b` could not be stored and its partition is re-read from its first record: forget what is open and
        start the partition again where `b` started, with what `b` accounted for."""
        self.drop(b.topic, b.partition)
        if b.covers_from is not None:
            self.skipped[(b.topic, b.partition)] = b.covers_from

    def flush_all(self) -> list[Batch]:
        return [self._close(tp) for tp in list(self.open)]
