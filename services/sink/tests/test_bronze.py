"""Bronze object rules: deterministic names, hour partitioning, size/age rotation, dead letters covered by commits."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from coinpulse_sink import bronze

pytestmark = pytest.mark.unit

H10 = 1_763_892_000_000  # 2025-11-23 10:00:00 UTC
H11 = H10 + 3_600_000


def _add(b, off, ms, now=0.0, topic="upbit.raw", part=0):
    return b.add(topic, part, off, "upbit", ms, f'{{"o":{off}}}\n'.encode(), now)


def test_object_key_layout():
    assert bronze.object_key("", "upbit", "2025-11-23", 7, "upbit.raw", 2, 1234) == (
        "bronze/upbit/dt=2025-11-23/hour=07/upbit.raw+2+1234.jsonl")
    assert bronze.object_key("t1/", "dc", "2025-11-23", 23, "t1.dc.raw", 0, 0).startswith("t1/bronze/dc/")


def test_source_of_topic():
    assert bronze.source_of("upbit.raw") == "upbit" and bronze.source_of("dc.raw") == "dc"


def test_event_time_from_received_at_fetched_at_or_kafka_timestamp():
    t = dt.datetime(2025, 11, 23, 10, 0, tzinfo=dt.UTC)
    assert bronze.event_ms({"received_at": t}, 5) == H10
    assert bronze.event_ms({"fetched_at": H10}, 5) == H10
    assert bronze.event_ms({}, 42) == 42
    with pytest.raises(ValueError):
        bronze.event_ms({}, None)


def test_hour_change_closes_the_object_and_the_next_starts_at_its_first_offset():
    b = bronze.Batcher(100, 1 << 20, 60)
    assert _add(b, 0, H10) == [] and _add(b, 1, H10 + 1) == []
    ready = _add(b, 2, H11)
    assert [(r.start_offset, r.end_offset, r.hour, r.records) for r in ready] == [(0, 1, 10, 2)]
    assert b.open[("upbit.raw", 0)].start_offset == 2 and b.open[("upbit.raw", 0)].hour == 11


def test_record_count_and_size_close_objects():
    b = bronze.Batcher(3, 1 << 20, 60)
    out = [r for i in range(7) for r in _add(b, i, H10)]
    assert [(r.start_offset, r.end_offset) for r in out] == [(0, 2), (3, 5)]
    b = bronze.Batcher(100, 20, 60)
    out = [r for i in range(4) for r in _add(b, i, H10)]
    assert [(r.start_offset, r.end_offset) for r in out] == [(0, 2)]


def test_age_closes_an_idle_object():
    b = bronze.Batcher(100, 1 << 20, 60)
    _add(b, 0, H10, now=0.0)
    assert b.due(59.0) == []
    assert [r.start_offset for r in b.due(60.0)] == [0] and not b.open


def test_partitions_are_independent():
    b = bronze.Batcher(2, 1 << 20, 60)
    _add(b, 0, H10, part=0)
    _add(b, 0, H10, part=1)
    assert [r.partition for r in _add(b, 1, H10, part=1)] == [1]
    assert ("upbit.raw", 0) in b.open


def test_dead_letter_offset_extends_the_open_object_commit():
    b = bronze.Batcher(100, 1 << 20, 60)
    assert b.skip("upbit.raw", 0, 0) is False  # nothing open: the caller commits past it
    _add(b, 1, H10)
    assert b.skip("upbit.raw", 0, 2) is True
    (r,) = b.flush_all()
    assert (r.start_offset, r.end_offset, r.records) == (1, 2, 1)


def test_same_records_give_the_same_objects_after_a_restart():
    """Determinism: re-reading from an object's first offset rebuilds the same key and content."""
    recs = [(i, H10 + i * 600_000) for i in range(12)]  # crosses into hour 11 at i = 6

    def run(start):
        b = bronze.Batcher(4, 1 << 20, 60)
        out = [r for off, ms in recs if off >= start for r in _add(b, off, ms)] + b.flush_all()
        return {r.key(""): r.body() for r in out}

    first = run(0)
    assert list(first) == [f"bronze/upbit/dt=2025-11-23/hour={h}/upbit.raw+0+{o}.jsonl"
                           for h, o in (("10", 0), ("10", 4), ("11", 6), ("11", 10))]
    again = run(4)
    assert all(first[k] == v for k, v in again.items())


def test_json_line_keeps_the_record_and_its_kafka_coordinates():
    t = dt.datetime(2025, 11, 23, 10, 0, tzinfo=dt.UTC)
    line = bronze.json_line("upbit.raw", 1, 9, 123, b"KRW-BTC", {"received_at": t, "payload": "{\"a\":1}", "b": b"\x00"})
    assert line.endswith(b"\n")
    doc = json.loads(line)
    assert doc == {"topic": "upbit.raw", "partition": 1, "offset": 9, "timestamp": 123, "key": "KRW-BTC",
                   "value": {"received_at": H10, "payload": "{\"a\":1}", "b": "AA=="}}


def _covers(batch):
    return batch.metadata().get("covers-from")


def test_a_transaction_marker_between_objects_is_accounted_for_by_the_next():
    """read_committed skips the commit marker at offset 2: the object from 3 on says it covers from 2."""
    b = bronze.Batcher(2, 1 << 20, 60)
    (first,) = _add(b, 0, H10) + _add(b, 1, H10)
    assert _covers(first) is None
    _add(b, 3, H10)
    (second,) = _add(b, 4, H10)
    assert (second.start_offset, _covers(second)) == (3, "2")
    _add(b, 5, H10)  # no marker in between: nothing to say
    assert _covers(b.flush_all()[0]) is None


def test_a_marker_before_an_hour_change_and_after_an_aged_object():
    b = bronze.Batcher(100, 1 << 20, 60)
    _add(b, 0, H10)
    (closed,) = _add(b, 2, H11)  # offset 1 was a marker; the hour changed
    assert (closed.end_offset, b.open[("upbit.raw", 0)].covers_from) == (0, 1)
    b.flush_all()
    _add(b, 10, H11, now=0.0)
    b.due(60.0)
    assert _add(b, 12, H11, now=61.0) == [] and b.open[("upbit.raw", 0)].covers_from == 11


def test_an_assignment_resumes_at_its_committed_position():
    b = bronze.Batcher(100, 1 << 20, 60)
    b.resume("upbit.raw", 0, 7)  # committed 7 (a marker); the first record read is 8
    _add(b, 8, H10)
    assert _covers(b.flush_all()[0]) == "7"
    b.drop("upbit.raw", 0)  # a new assignment knows nothing of the last one
    _add(b, 20, H10)
    assert _covers(b.flush_all()[0]) is None


def test_a_failed_write_is_retried_with_what_it_accounted_for():
    b = bronze.Batcher(2, 1 << 20, 60)
    b.resume("upbit.raw", 0, 4)
    (batch,) = _add(b, 5, H10) + _add(b, 6, H10)
    b.retry_from(batch)  # the put failed: the sink seeks back to 5
    (again,) = _add(b, 5, H10) + _add(b, 6, H10)
    assert again.key("") == batch.key("") and _covers(again) == "4"
