"""Backfill without a stack: the S3 reader reads what the sink's own writer produces, proves coverage (a lost object
or hour is named, a dead letter at an object's edge is not a gap) and refuses before any table is touched; the
bronze reader gives the trades the live ingester made from the frames its bronze records hold; settings bounds;
archive keys stay in the archive."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter

import pytest
from coinpulse_common import bronze as common_bronze
from coinpulse_flows import backfill, storage, tiering
from coinpulse_flows.settings import FlowSettings
from coinpulse_sink import bronze as sink_bronze
from coinpulse_upbit.bronze import trades_of_frame

pytestmark = pytest.mark.unit

T0 = dt.datetime(2025, 11, 23, 10, 0, tzinfo=dt.UTC)
T0_MS = int(T0.timestamp() * 1000)
TOPIC = "upbit.raw"


class FakeS3:
    """The few boto3 calls the reader and the writer make, over a dict."""

    def __init__(self):
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def put_object(self, Bucket, Key, Body, Metadata=None, **_):  # noqa: N803 - boto3's names
        self.objects[Key] = (bytes(Body), dict(Metadata or {}))

    def get_object(self, Bucket, Key):  # noqa: N803
        return {"Body": _Body(self.objects[Key][0])}

    def head_object(self, Bucket, Key):  # noqa: N803
        return {"Metadata": self.objects[Key][1], "ContentLength": len(self.objects[Key][0])}

    def get_paginator(self, _name):
        fake = self

        class P:
            def paginate(self, Bucket, Prefix=""):  # noqa: N803
                keys = sorted(k for k in fake.objects if k.startswith(Prefix))
                yield {"Contents": [{"Key": k, "Size": len(fake.objects[k][0]), "LastModified": T0} for k in keys]}
        return P()


class _Body(io.BytesIO):
    def iter_lines(self):
        yield from (line.rstrip(b"\n") for line in self.getvalue().splitlines())


def _frame(seq: int, recv_ms: int, trade_ms: int, price: float = 100.0) -> dict:
    """A raw_frame record as the Avro decoder hands it to the sink (received_at a datetime)."""
    payload = {"type": "trade", "code": "KRW-BTC", "trade_price": price, "trade_volume": 1.0, "ask_bid": "BID",
               "trade_timestamp": trade_ms, "sequential_id": seq, "stream_type": "REALTIME"}
    return {"source": "upbit.ws", "connection_id": "c1", "seq": seq,
            "received_at": dt.datetime.fromtimestamp(recv_ms / 1000, dt.UTC), "payload": json.dumps(payload),
            "market": "KRW-BTC", "url": None}


def _write_with_the_sink(s3: FakeS3, records: list[tuple[int, dict | None]], max_records: int = 4,
                         prefix: str = "") -> None:
    """Objects exactly as the bronze sink makes them: its Batcher, its json_line, its key and metadata."""
    b = sink_bronze.Batcher(max_records, 1 << 20, 3600)
    ready = []
    for off, value in records:
        if value is None:  # a record the sink dead-lettered
            b.skip(TOPIC, 0, off)
            continue
        ms = sink_bronze.event_ms(value, None)
        ready += b.add(TOPIC, 0, off, sink_bronze.source_of(TOPIC), ms,
                       sink_bronze.json_line(TOPIC, 0, off, ms, b"KRW-BTC", value), 0.0)
    for batch in ready + b.flush_all():
        s3.put_object(Bucket="b", Key=batch.key(prefix), Body=batch.body(), Metadata=getattr(batch, "metadata", dict)())


@pytest.fixture
def s3(monkeypatch) -> FakeS3:
    fake = FakeS3()
    monkeypatch.setattr(storage.s3, "client", lambda *_a, **_k: fake)
    return fake


def _settings(**kw) -> FlowSettings:
    return FlowSettings(backfill_topic=TOPIC, **kw)


def _records(n: int, step_ms: int = 60_000) -> list[tuple[int, dict]]:
    """Frames received every `step_ms` from T0 - 2 min, each with one trade received 500 ms after it happened."""
    return [(i, _frame(i, T0_MS - 120_000 + i * step_ms + 500, T0_MS - 120_000 + i * step_ms)) for i in range(n)]


def test_s3_reader_reads_every_record_the_sink_wrote_and_finds_it_complete(s3):
    _write_with_the_sink(s3, _records(200, step_ms=30_000))  # 100 minutes: hours 09, 10 and 11
    assert {k.split("/")[3] for k in s3.objects} == {"hour=09", "hour=10", "hour=11"}
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=60))
    got = list(src.frames())
    assert src.missing == [], src.detail
    assert [f["seq"] for f in got] == list(range(4, 124))  # hours 10 and 11 (the window's), in offset order
    assert got[0]["received_at"] == T0_MS - 120_000 + 4 * 30_000 + 500  # the line's value, as the sink encoded it


def test_a_deleted_object_is_named_by_its_hour(s3):
    _write_with_the_sink(s3, _records(200, step_ms=30_000))
    victim = sorted(k for k in s3.objects if "hour=10" in k)[3]
    del s3.objects[victim]
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=30))
    list(src.frames())
    assert src.missing == ["2025-11-23T10"] and "offsets" in src.detail[0]


def test_an_hour_without_objects_is_named(s3):
    _write_with_the_sink(s3, _records(200, step_ms=30_000))
    for k in [k for k in s3.objects if "hour=11" in k]:
        del s3.objects[k]
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=90))
    list(src.frames())
    assert src.missing == ["2025-11-23T11"]


def _received(offsets: range, from_ms: int, step_ms: int = 30_000) -> list[tuple[int, dict]]:
    return [(off, _frame(off, from_ms + i * step_ms + 500, from_ms + i * step_ms)) for i, off in enumerate(offsets)]


def test_an_hour_in_which_nothing_was_received_is_not_missing(s3):
    """Offsets continue across the quiet hour (11): nothing was received then, so nothing of it can be lost."""
    recs = _received(range(0, 40), T0_MS - 120_000) + _received(range(40, 60), T0_MS + 2 * 3_600_000)
    _write_with_the_sink(s3, recs)
    assert not [k for k in s3.objects if "hour=11" in k]
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=150))
    got = list(src.frames())
    assert src.missing == [], src.detail
    assert "no record was received in 2025-11-23T11" in " ".join(src.detail)
    assert [f["seq"] for f in got] == list(range(4, 60))


def test_an_hour_before_a_partitions_first_record_is_not_missing(s3):
    _write_with_the_sink(s3, _received(range(0, 20), T0_MS + 3_600_000))  # the partition starts in hour 11
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=90))
    list(src.frames())
    assert src.missing == [], src.detail


def test_an_hour_before_a_partition_that_starts_with_dead_letters_is_not_missing(s3):
    """Offsets 0..2 were dead-lettered: the first object starts at 3 and says it covers from 0."""
    recs: list[tuple[int, dict | None]] = [(off, None) for off in range(3)]
    _write_with_the_sink(s3, recs + _received(range(3, 20), T0_MS + 3_600_000))
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=90))
    list(src.frames())
    assert src.missing == [], src.detail


def test_a_quiet_hour_next_to_lost_offsets_is_missing(s3):
    """The first object after the empty hour does not start the partition, and nothing before it is in sight."""
    _write_with_the_sink(s3, _received(range(5, 25), T0_MS + 3_600_000))
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=90))
    list(src.frames())
    # offsets 0..4 are in no object in sight: they may have been in a lost object of hour 10 or of hour 11
    assert src.missing == ["2025-11-23T10", "2025-11-23T11"]


def _three_hours_with_a_quiet_one() -> list[tuple[int, dict]]:
    """Offsets 0..9 received in hour 07, nothing in hour 08 and 09, 10..29 in hour 10, 30..49 in hour 11."""
    return (_received(range(0, 10), T0_MS - 3 * 3_600_000) + _received(range(10, 30), T0_MS, step_ms=60_000)
            + _received(range(30, 50), T0_MS + 3_600_000, step_ms=60_000))


def test_a_missing_first_object_of_a_partition_is_found_behind_a_quiet_hour(s3):
    """The window's first object of the partition is deleted, and the hour before the window (09) is quiet: the
    reader looks further back (hour 07) for the partition's last object, and the offsets in between are a gap."""
    _write_with_the_sink(s3, _three_hours_with_a_quiet_one(), max_records=10)
    del s3.objects[min(k for k in s3.objects if "hour=10" in k)]
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=120))
    list(src.frames())
    assert src.missing == ["2025-11-23T10"], src.detail
    assert "offsets 10..19 are in no object" in " ".join(src.detail)


def test_a_partition_quiet_before_the_window_is_complete(s3):
    _write_with_the_sink(s3, _three_hours_with_a_quiet_one(), max_records=10)
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=120))
    got = list(src.frames())
    assert src.missing == [], src.detail
    assert [f["seq"] for f in got] == list(range(10, 50))


def test_a_partition_whose_earlier_objects_are_out_of_sight_is_missing(s3):
    """Nothing of the partition within the look-back before the window: its first offsets are unaccounted for."""
    _write_with_the_sink(s3, _three_hours_with_a_quiet_one(), max_records=10)
    src = backfill.S3Bronze(_settings(backfill_s3_lookback_hours=2), T0, T0 + dt.timedelta(minutes=120))
    list(src.frames())
    assert src.missing == ["2025-11-23T10"], src.detail
    assert "offsets below 10" in " ".join(src.detail) and "LOOKBACK_HOURS" in " ".join(src.detail)


def test_an_empty_hour_after_the_last_object_is_missing(s3):
    _write_with_the_sink(s3, _received(range(0, 20), T0_MS))
    src = backfill.S3Bronze(_settings(), T0, T0 + dt.timedelta(minutes=90))
    list(src.frames())
    assert src.missing == ["2025-11-23T11"]


def test_a_dead_letter_at_an_objects_edge_is_not_a_gap(s3):
    recs: list[tuple[int, dict | None]] = list(_records(12, step_ms=10_000))
    recs[3] = (3, None)  # dead-lettered right after an object closed: no object was open
    recs[5] = (5, None)  # dead-lettered inside an open object, at its end
    _write_with_the_sink(s3, recs, max_records=3)
    src = backfill.S3Bronze(_settings(), T0 - dt.timedelta(minutes=2), T0)
    got = list(src.frames())
    assert src.missing == [], src.detail
    assert [f["seq"] for f in got] == [0, 1, 2, 4, 6, 7, 8, 9, 10, 11]


def test_rebuild_refuses_before_touching_any_table(s3, monkeypatch):
    _write_with_the_sink(s3, _records(200, step_ms=30_000))
    del s3.objects[sorted(k for k in s3.objects if "hour=10" in k)[5]]

    def never(*_a, **_k):
        raise AssertionError("the tables were touched")
    monkeypatch.setattr(backfill, "_write", never)
    with pytest.raises(backfill.IncompleteSource) as e:
        backfill.rebuild(_settings(), T0, T0 + dt.timedelta(minutes=30), "s3")
    assert e.value.missing == ["2025-11-23T10"] and "2025-11-23T10" in str(e.value)
    assert "nothing was changed" in str(e.value)


def test_rebuild_of_a_range_not_yet_over_is_refused(monkeypatch):
    monkeypatch.setattr(backfill, "_write", lambda *_a, **_k: pytest.fail("the tables were touched"))
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with pytest.raises(backfill.IncompleteSource):
        backfill.rebuild(_settings(), now - dt.timedelta(minutes=1), now, "s3")


def test_rebuild_uses_every_trade_of_the_sinks_objects(s3, monkeypatch):
    _write_with_the_sink(s3, _records(40, step_ms=15_000))  # trades from T0 - 2 min to T0 + 7.75 min
    seen = {}

    def write(_s, start, end, trades, dry_run=False):
        seen["trades"] = trades
        return len(trades), 0, {}
    monkeypatch.setattr(backfill, "_write", write)
    r = backfill.rebuild(_settings(), T0, T0 + dt.timedelta(minutes=5), "s3")
    assert r.trades == 20 and sorted(t["sequential_id"] for t in seen["trades"]) == list(range(8, 28))
    assert all(t["backfilled"] is False and t["stream_type"] == "REALTIME" for t in seen["trades"])


# --- the bronze reader reads what the ingester and the sink wrote ------------------------------------------------
_SHAPES = [
    {"type": "trade", "code": "KRW-BTC", "trade_price": 0, "trade_volume": 1, "ask_bid": "BID",
     "trade_timestamp": 1, "sequential_id": 1},  # a zero price: live accepts it
    {"type": "trade", "code": "krw-btc", "trade_price": "1.5E3", "trade_volume": "2", "ask_bid": "ASK",
     "timestamp": 1_700_000_000_000, "sequential_id": "17", "stream_type": "WHATEVER"},  # fallbacks
    {"ty": "trade", "cd": "KRW-ETH", "tp": 5.0, "tv": 0.0, "ab": "BID", "tms": 9, "sid": 3.0, "st": "SNAPSHOT"},
    {"type": "trade", "code": "KRW-BTC", "trade_price": True, "trade_volume": 1, "ask_bid": "BID",
     "trade_timestamp": 1, "sequential_id": 1},  # a bool is no number
    {"type": "trade", "code": "KRW-BTC", "trade_price": 1, "trade_volume": 1, "ask_bid": "BID",
     "trade_timestamp": 1, "sequential_id": 1.5},  # nor is a fractional id
    {"type": "trade", "code": "KRW-BTC", "trade_price": 1, "trade_volume": -1, "ask_bid": "BID",
     "trade_timestamp": 1, "sequential_id": 2, "change": "RISE", "prev_closing_price": "x"},
    {"type": "trade", "cd": "KRW-BTC", "tp": 1, "tv": 1, "ab": "BID", "ttms": 1, "sid": 1},  # mixed: no code
]
_TICKER = {"ty": "ticker", "cd": "KRW-XRP", "tp": 3412.0, "tms": 1_747_785_603_011, "st": "REALTIME"}
_FRAMES = [json.dumps(m).encode() for m in _SHAPES] + [
    json.dumps([{"ty": "trade", "cd": "KRW-XRP", "tp": 3412.0, "tv": 10.0, "ab": "ASK", "ttms": 1_747_785_603_000,
                 "sid": 7}, _TICKER,
                {"ty": "trade", "cd": "KRW-XRP", "tp": 3413.0, "tv": 1.0, "ab": "BID", "ttms": 1_747_785_603_001,
                 "sid": 8, "pcp": 3400, "c": "RISE", "cp": 13}]).encode(),  # a SIMPLE_LIST frame
    b'{"status":"UP"}',
    b'{"type":"trade","code":"KRW-BTC","trade_price":',  # truncated
    b'{"type":"trade","code":"KRW-BTC","trade_price":NaN,"trade_volume":1,"ask_bid":"BID","trade_timestamp":1,'
    b'"sequential_id":40}',  # not JSON (orjson, the live decoder, refuses the literal)
    b'{"type":"trade","code":"KRW-DOGE","trade_price":18446744073709551616,"trade_volume":1,"ask_bid":"BID",'
    b'"trade_timestamp":1,"sequential_id":41}',  # beyond 64 bits: the live decoder reads a float, a price it takes
    b'{"type":["trade"],"code":"KRW-BTC"}',  # a type that is no string
]


def _ms(v):
    return int(v.timestamp() * 1000) if isinstance(v, dt.datetime) else v


def test_the_bronze_reader_gives_the_trades_the_ingester_made_from_what_the_sink_wrote(s3):
    """Frames through the real ingester (its bronze records and its silver trades), its bronze records through the
    real sink's writer into S3, back through the S3 reader and the bronze reader: the same trades, the same refusals."""
    from coinpulse_common.avro import schema_text
    from coinpulse_ingest_upbit.service import UpbitIngest
    from coinpulse_ingest_upbit.settings import IngestSettings
    from coinpulse_testing.kafka import MemoryProducer
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    reg = SchemaRegistryClient.new_client({"url": "mock://bronze-reader"})
    s = IngestSettings(markets="KRW-BTC", kafka_bootstrap="127.0.0.1:1", trade_topic="br.trade",
                       ticker_topic="br.ticker", orderbook_topic="br.orderbook", raw_topic="br.raw", dlq_topic="br.dlq")
    for stem, topic in (("trade", s.trade_topic), ("ticker", s.ticker_topic), ("orderbook", s.orderbook_topic),
                        ("raw_frame", s.raw_topic), ("dead_letter", s.dlq_topic)):
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    prod = MemoryProducer()
    svc = UpbitIngest(s, producer_=prod, registry=reg)
    for seq, f in enumerate(_FRAMES):
        svc.on_frame(f, "c1", seq)
    of = lambda topic, enc: [enc.decode(v) for t, _, v in prod.records if t == topic]  # noqa: E731
    raws, dead = of(s.raw_topic, svc.enc_raw), of(s.dlq_topic, svc.enc_dlq)
    live = [{k: _ms(v) for k, v in t.items()} for t in of(s.trade_topic, svc.enc_trade)]
    assert len(raws) == len(_FRAMES) and len(live) == 6 and len(dead) == 7, (len(raws), live, dead)

    _write_with_the_sink(s3, list(enumerate(raws)))
    recv = [_ms(r["received_at"]) for r in raws]
    lo = dt.datetime.fromtimestamp((min(recv) - min(recv) % 3_600_000) / 1000, dt.UTC)
    src = backfill.S3Bronze(_settings(), lo, dt.datetime.fromtimestamp((max(recv) + 1) / 1000, dt.UTC))
    stats: Counter = Counter()
    ours = [t for raw in src.frames() for t in trades_of_frame(raw, stats)]
    assert src.missing == [], src.detail
    assert ours == live
    assert stats == Counter(bad_trade=4, bad_json=2, bad_type=1, not_a_trade=2)  # the 7 the ingester dead-lettered
    assert sum(v for k, v in stats.items() if k != "not_a_trade") == len(dead)


def test_rest_pages_in_bronze_give_the_trades_the_ingesters_gap_backfill_made():
    from coinpulse_upbit import protocol

    rows = [{"market": "KRW-BTC", "trade_date_utc": "2025-11-23", "trade_time_utc": "10:00:00",
             "timestamp": T0_MS + i, "trade_price": 10.0 + i, "trade_volume": 0.1, "prev_closing_price": 9.0,
             "change_price": 1.0, "change": "RISE", "ask_bid": "ASK", "sequential_id": 50 + i} for i in range(3)]
    raw = {"source": "upbit.rest", "payload": json.dumps(rows), "received_at": T0_MS + 5000}
    assert trades_of_frame(raw, Counter()) == [protocol.parse_rest_trade(r, T0_MS + 5000) for r in rows]


# --- settings bounds and archive keys --------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "words"), [
    ({"backup_keep": 0}, ("backup_keep=0", "delete every dump")),
    ({"tier_after_days": -1}, ("tier_after_days=-1", "today")),
    ({"archive_after_days": 3}, ("archive_after_days=3", "tier_after_days=14")),
    ({"lock_timeout_s": 0}, ("lock_timeout_s=0", "for ever")),
    ({"spike_z": 0}, ("spike_z=0", "spike")),
    ({"tier_prefix": "../elsewhere/"}, ("tier_prefix='../elsewhere/'", "archive folder")),
    ({"tier_prefix": "/abs/"}, ("tier_prefix='/abs/'", "relative")),
    ({"check_grace_minutes": 500}, ("check_grace_minutes=500", "check_window_minutes=180")),
])
def test_a_setting_out_of_range_is_refused_with_its_name_and_why(kw, words):
    FlowSettings()  # the defaults are in range
    with pytest.raises(ValueError) as e:
        FlowSettings(**kw)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("key", ["../outside/part-0.parquet", "{tmp}/absolute/part-0.parquet",
                                 "a/../../part-0.parquet", "a//b.parquet", "a\\..\\b.parquet"])
def test_an_archive_key_never_writes_outside_the_archive_folder(tmp_path, key):
    key = key.format(tmp=tmp_path)  # an absolute key inside the test's folder: the old code wrote wherever it said
    archive = tmp_path / "archive"
    s = FlowSettings(archive_dir_override=str(archive))

    class Store:
        def head(self, k):
            return {"ContentLength": 3, "Metadata": {}, "ETag": ""}

        def download(self, k, path):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"abc")

        def delete(self, k):
            pytest.fail("deleted from S3")

    with pytest.raises(ValueError, match="archive folder|safe relative path"):
        tiering.archive_object(s, Store(), key)
    assert not any(p.is_file() for p in tmp_path.rglob("*") if archive not in p.parents)


def test_the_bronze_layout_is_the_one_definition_both_sides_use():
    assert sink_bronze.object_key is common_bronze.object_key and sink_bronze.json_line is common_bronze.json_line
    k = common_bronze.parse_key(common_bronze.object_key("t1/", "upbit", "2025-11-23", 7, "t1.upbit.raw", 2, 1234))
    assert (k.prefix, k.source, k.day, k.hour, k.topic, k.partition, k.start_offset) == (
        "t1/", "upbit", "2025-11-23", 7, "t1.upbit.raw", 2, 1234)
    line = common_bronze.read_line(common_bronze.json_line("x", 1, 9, 5, None, {"a": 1}))
    assert (line.topic, line.partition, line.offset, line.value) == ("x", 1, 9, {"a": 1})
