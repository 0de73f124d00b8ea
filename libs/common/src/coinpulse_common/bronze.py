"""The bronze archive's object layout and line format, written by the sink's bronze S3 sink and read by the flows'
backfill: one definition of both sides.

Objects (one topic-partition, one receive hour in UTC, consecutive records; named after the first record):

    [<ns>/]bronze/<source>/dt=YYYY-MM-DD/hour=HH/<topic>+<partition>+<start_offset>.jsonl

`<source>` is the bronze topic's first segment (`upbit.raw` -> `upbit`). Each line is one Kafka record:

    {"topic": ..., "partition": ..., "offset": ..., "timestamp": <kafka ms or null>, "key": <utf-8 or null>,
     "value": <the Avro record as decoded; timestamps as epoch ms, bytes as base64>}

The writer sets the object's user metadata `end-offset` (the last offset the object accounts for, including records
that went to the dead-letter topic instead), `records`, and `covers-from` when dead letters came right before its
first record while no object was open; a reader uses them to tell a dead letter at an object's edge from a missing
object (a sink restart forgets such dead letters: the reader then reports a gap, erring on the safe side). Pure apart from `list_objects` / `read_object`, which take a boto3 client.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# the receive-time field of each bronze record type
TIME_FIELDS = ("received_at", "fetched_at")
HOUR_MS = 3_600_000
META_END_OFFSET = "end-offset"
META_RECORDS = "records"
META_COVERS_FROM = "covers-from"

_KEY = re.compile(r"^(?P<prefix>(?:.*/)?)bronze/(?P<source>[^/]+)/dt=(?P<day>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
                  r"(?P<topic>[^/+]+)\+(?P<partition>\d+)\+(?P<offset>\d+)\.jsonl$")


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
    """The receive time that decides a record's hour: its own receive-time field, else the Kafka timestamp."""
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


def hour_prefix(prefix: str, source: str, day: str, hour: int) -> str:
    return f"{prefix}bronze/{source}/dt={day}/hour={hour:02d}/"


def object_key(prefix: str, source: str, day: str, hour: int, topic: str, partition: int, start_offset: int) -> str:
    return f"{hour_prefix(prefix, source, day, hour)}{topic}+{partition}+{start_offset}.jsonl"


@dataclass(frozen=True)
class ObjectKey:
    key: str
    prefix: str
    source: str
    day: str
    hour: int
    topic: str
    partition: int
    start_offset: int

    @property
    def hour_start_ms(self) -> int:
        d = dt.datetime.fromisoformat(self.day).replace(hour=self.hour, tzinfo=dt.UTC)
        return int(d.timestamp() * 1000)


def parse_key(key: str) -> ObjectKey | None:
    """The parts of a bronze object key, or None for any other key."""
    m = _KEY.match(key)
    if not m:
        return None
    return ObjectKey(key, m["prefix"], m["source"], m["day"], int(m["hour"]), m["topic"], int(m["partition"]),
                     int(m["offset"]))


def hours(start_ms: int, end_ms: int) -> list[tuple[str, int]]:
    """The (day, hour) of every hour overlapping [start_ms, end_ms)."""
    out, t = [], start_ms - start_ms % HOUR_MS
    while t < end_ms:
        out.append(hour_of(t))
        t += HOUR_MS
    return out


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


@dataclass(frozen=True)
class Line:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: str | None
    value: dict[str, Any]


def read_line(line: bytes | str) -> Line:
    """The inverse of `json_line`. Raises ValueError for a line that is not one."""
    doc = json.loads(line)
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), dict):
        raise ValueError("not a bronze line: no record under `value`")
    try:
        return Line(str(doc["topic"]), int(doc["partition"]), int(doc["offset"]), doc.get("timestamp"),
                    doc.get("key"), doc["value"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a bronze line: {e}") from None


def write_metadata(end_offset: int, records: int, covers_from: int | None = None) -> dict[str, str]:
    """The user metadata the writer stores with an object."""
    meta = {META_END_OFFSET: str(end_offset), META_RECORDS: str(records)}
    if covers_from is not None:
        meta[META_COVERS_FROM] = str(covers_from)
    return meta


# --- reading S3 -----------------------------------------------------------------------------------------------
def list_objects(client: Any, bucket: str, prefix: str, source: str, start_ms: int, end_ms: int,
                 topic: str | None = None) -> list[ObjectKey]:
    """Bronze objects of `source` whose hour overlaps [start_ms, end_ms), ordered by (topic, partition, offset);
    `topic` keeps only that topic's objects (the full name, namespace included)."""
    out = []
    for day, hour in hours(start_ms, end_ms):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                  Prefix=hour_prefix(prefix, source, day, hour))
        for page in pages:
            for o in page.get("Contents", []):
                k = parse_key(o["Key"])
                if k is not None and (topic is None or k.topic == topic):
                    out.append(k)
    return sorted(out, key=lambda k: (k.topic, k.partition, k.start_offset))


def read_object(client: Any, bucket: str, key: str) -> Iterator[Line]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for raw in body.iter_lines():
        if raw.strip():
            yield read_line(raw)


def offsets_meta(client: Any, bucket: str, key: str) -> tuple[int | None, int | None]:
    """The writer's (`covers-from`, `end-offset`) metadata of an object, each None when absent."""
    meta = client.head_object(Bucket=bucket, Key=key).get("Metadata", {})

    def get(name: str) -> int | None:
        try:
            return int(meta[name])
        except (KeyError, ValueError):
            return None
    return get(META_COVERS_FROM), get(META_END_OFFSET)


# --- coverage -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadObject:
    """What a reader found in one object: its name and the first/last offsets of its lines."""

    key: ObjectKey
    first_offset: int | None
    last_offset: int | None
    end_offset: int | None = None  # from the object's metadata, when it was asked for
    covers_from: int | None = None  # likewise


def offset_gaps(objects: Iterable[ReadObject]) -> list[tuple[ObjectKey, int, int]]:
    """Per topic-partition, the offsets missing between consecutive objects: (object after the gap, first missing,
    last missing). An object's end is its `end_offset` when known (dead letters at its end), else its last line;
    its start is its `covers_from` when known (dead letters before it), else its first record's offset."""
    by_tp: dict[tuple[str, int], list[ReadObject]] = {}
    for o in objects:
        by_tp.setdefault((o.key.topic, o.key.partition), []).append(o)
    gaps = []
    for objs in by_tp.values():
        objs.sort(key=lambda o: o.key.start_offset)
        for prev, nxt in zip(objs, objs[1:], strict=False):
            end = prev.end_offset if prev.end_offset is not None else prev.last_offset
            if end is None:
                end = prev.key.start_offset - 1
            start = nxt.covers_from if nxt.covers_from is not None else nxt.key.start_offset
            if start > end + 1:
                gaps.append((nxt.key, end + 1, start - 1))
    return gaps
