"""Bronze objects: the pure rules of the S3 sink (no Kafka, no S3).

Each object holds consecutive records of one topic-partition from one hour (UTC, by the record's receive time),
as JSON lines, and is named after its first record:

    [<ns>/]bronze/<source>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<start_offset>.jsonl

An object closes when the next record belongs to another hour, or at `max_records` / `max_bytes`, or when it has
been open for `max_age_s`. Offsets are committed only after the object is stored, and the name depends only on the
first record, so a retry after a crash rewrites the same key (a superset or a prefix of the earlier content, the
rest following in later objects): objects never overlap and nothing is lost.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

# the receive-time field of each bronze record type
TIME_FIELDS = ("received_at", "fetched_at")


def source_of(base_topic: str) -> str:
    """`upbit.raw` -> `upbit`, `dc.raw` -> `dc`."""
    return base_topic.split(".", 1)[0]


def _ms(v: Any) -> int | None:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return int(round(v.timestamp() * 1000))
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


def event_ms(value: dict[str, Any], kafka_ts_ms: int | None) -> int:
    for f in TIME_FIELDS:
        ms = _ms(value.get(f))
        if ms is not None:
            return ms
    if kafka_ts_ms is None or kafka_ts_ms < 0:
        raise ValueError("record has no receive time and no Kafka timestamp")
    return kafka_ts_ms


def hour_of(ms: int) -> tuple[str, int]:
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%d"), t.hour


def object_key(prefix: str, source: str, day: str, hour: int, topic: str, partition: int, start_offset: int) -> str:
    return f"{prefix}bronze/{source}/dt={day}/hour={hour:02d}/{topic}+{partition}+{start_offset}.jsonl"


def _default(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return _ms(v)
    if isinstance(v, bytes | bytearray):
        return base64.b64encode(v).decode()
    raise TypeError(f"cannot encode {type(v).__name__}")


def json_line(topic: str, partition: int, offset: int, kafka_ts_ms: int | None, key: bytes | None,
              value: dict[str, Any]) -> bytes:
    """One line: the record exactly as decoded (timestamps as epoch ms) plus where it came from in Kafka."""
    doc = {"topic": topic, "partition": partition, "offset": offset, "timestamp": kafka_ts_ms,
           "key": key.decode("utf-8", "replace") if key is not None else None, "value": value}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=_default).encode() + b"\n"


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

    def key(self, prefix: str) -> str:
        return object_key(prefix, self.source, self.day, self.hour, self.topic, self.partition, self.start_offset)

    def body(self) -> bytes:
        return b"".join(self.lines)

    @property
    def records(self) -> int:
        return len(self.lines)


class Batcher:
    """Open objects per topic-partition; `add` and `due` return the objects ready to be written."""

    def __init__(self, max_records: int, max_bytes: int, max_age_s: float):
        self.max_records, self.max_bytes, self.max_age_s = max_records, max_bytes, max_age_s
        self.open: dict[tuple[str, int], Batch] = {}

    def add(self, topic: str, partition: int, offset: int, source: str, ms: int, line: bytes,
            now: float) -> list[Batch]:
        ready: list[Batch] = []
        day, hour = hour_of(ms)
        tp = (topic, partition)
        b = self.open.get(tp)
        if b is not None and (b.day, b.hour) != (day, hour):
            ready.append(self.open.pop(tp))
            b = None
        if b is None:
            b = self.open[tp] = Batch(topic, partition, source, day, hour, offset, offset, now)
        b.lines.append(line)
        b.size_bytes += len(line)
        b.end_offset = offset
        if b.records >= self.max_records or b.size_bytes >= self.max_bytes:
            ready.append(self.open.pop(tp))
        return ready

    def skip(self, topic: str, partition: int, offset: int) -> bool:
        """A record that goes to the dead-letter topic instead: covered by the open object's commit if any.

        Returns False when no object is open (the caller commits past it on its own)."""
        b = self.open.get((topic, partition))
        if b is None:
            return False
        b.end_offset = offset
        return True

    def due(self, now: float) -> list[Batch]:
        tps = [tp for tp, b in self.open.items() if now - b.opened_at >= self.max_age_s]
        return [self.open.pop(tp) for tp in tps]

    def drop(self, topic: str, partition: int) -> None:
        self.open.pop((topic, partition), None)

    def flush_all(self) -> list[Batch]:
        out = list(self.open.values())
        self.open.clear()
        return out
