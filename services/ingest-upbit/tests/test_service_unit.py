"""The service's frame path (bronze, silver, dedupe, DLQ, overflow) with an in-memory producer and registry."""

import orjson
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_ingest_upbit.service import UpbitIngest
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_testing.kafka import MemoryProducer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

pytestmark = pytest.mark.unit


@pytest.fixture
def make():
    def _make(capacity: int = 10**9, buffer_max: int = 100_000):
        reg = SchemaRegistryClient.new_client({"url": "mock://unit"})
        # nothing here may reach a real broker: unroutable bootstrap and unit-only topic names
        s = IngestSettings(markets="KRW-BTC,KRW-ETH", buffer_max=buffer_max, kafka_bootstrap="127.0.0.1:1",
                           trade_topic="unit.trade", ticker_topic="unit.ticker", orderbook_topic="unit.orderbook",
                           raw_topic="unit.raw", dlq_topic="unit.dlq")
        for stem, topic in (("trade", s.trade_topic), ("ticker", s.ticker_topic), ("orderbook", s.orderbook_topic),
                            ("raw_frame", s.raw_topic), ("dead_letter", s.dlq_topic)):
            reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
        prod = MemoryProducer(capacity)
        svc = UpbitIngest(s, producer_=prod, registry=reg)
        return svc, prod

    return _make


def trade(sid: int, market: str = "KRW-BTC", st: str = "REALTIME", simple: bool = False) -> bytes:
    if simple:
        return orjson.dumps({"ty": "trade", "cd": market, "tp": 100.0, "tv": 1.0, "ab": "BID", "ttms": 1000 + sid,
                             "tms": 1001 + sid, "sid": sid, "st": st})
    return orjson.dumps({"type": "trade", "code": market, "trade_price": 100.0, "trade_volume": 1.0,
                         "ask_bid": "ASK", "trade_timestamp": 1000 + sid, "sequential_id": sid, "stream_type": st})


def topics(prod, svc):
    out = {}
    for t, _, _ in prod.records:
        out[t] = out.get(t, 0) + 1
    return out


def decode(svc, value: bytes, stem: str):
    enc = {"trade": svc.enc_trade, "raw_frame": svc.enc_raw, "dead_letter": svc.enc_dlq}[stem]
    return enc.decode(value)


def test_every_frame_goes_to_bronze_and_each_trade_once_to_silver(make):
    svc, prod = make()
    frames = [trade(1, st="SNAPSHOT"), trade(1), trade(2, simple=True), trade(2), trade(1, "KRW-ETH")]
    for i, f in enumerate(frames, 1):
        svc.on_frame(f, "conn1", i)
    counts = topics(prod, svc)
    assert counts[svc.s.raw_topic] == 5
    assert counts[svc.s.trade_topic] == 3  # (BTC,1) (BTC,2) (ETH,1)
    assert svc.stats.duplicates == 2 and svc.stats.trades == 3
    silver = [decode(svc, v, "trade") for t, _, v in prod.records if t == svc.s.trade_topic]
    assert [(r["market"], r["sequential_id"], r["stream_type"]) for r in silver] == [
        ("KRW-BTC", 1, "SNAPSHOT"), ("KRW-BTC", 2, "REALTIME"), ("KRW-ETH", 1, "REALTIME")]
    keys = [k for t, k, _ in prod.records if t == svc.s.trade_topic]
    assert keys == [b"KRW-BTC", b"KRW-BTC", b"KRW-ETH"]
    raw = decode(svc, prod.records[0][2], "raw_frame")
    assert raw["payload"] == frames[0].decode() and raw["connection_id"] == "conn1" and raw["market"] == "KRW-BTC"


def test_malformed_frames_go_to_the_dlq_with_reason_and_bytes(make):
    svc, prod = make()
    bad = [b'{"type":"trade"', b"\xff\xfe", b'{"ty":"candle.1s","cd":"KRW-BTC"}', b"[]",
           b'{"error":{"name":"NO_TICKET","message":"x"}}']
    for i, f in enumerate(bad, 1):
        svc.on_frame(f, "c", i)
    svc.on_frame(trade(5), "c", 6)  # and the service keeps going
    dead = [decode(svc, v, "dead_letter") for t, _, v in prod.records if t == svc.s.dlq_topic]
    assert [d["reason"].split(":")[0] for d in dead] == ["invalid_json", "invalid_json", "unknown_type",
                                                          "empty_list", "server_error"]
    assert dead[1]["payload"] == b"\xff\xfe" and all(d["service"] == "ingest-upbit" for d in dead)
    assert svc.stats.dlq == 5 and svc.stats.trades == 1 and svc.stats.error_frames == 1
    assert topics(prod, svc)[svc.s.raw_topic] == 6


def test_status_frames_are_counted_not_produced_to_silver(make):
    svc, prod = make()
    svc.on_frame(b'{"status":"UP"}', "c", 1)
    assert svc.stats.status_frames == 1 and set(topics(prod, svc)) == {svc.s.raw_topic}


def test_full_buffer_is_counted_and_the_trade_is_left_for_backfill(make):
    svc, prod = make(capacity=0, buffer_max=1)
    svc.on_frame(trade(1), "c", 1)  # bronze record is held (buffer 1), the trade is refused
    assert svc.stats.overflow == 1 and svc.stats.trades == 0
    assert not svc.dedupe.seen("KRW-BTC", 1)
    assert svc._pending["KRW-BTC"] == 1001  # backfill will page back to this trade's time
    prod.capacity = 10**9
    svc.sink.pump()
    assert len(prod.records) == 1 and not svc.sink.pending


def test_backfilled_trade_is_marked_and_deduped_against_live(make):
    svc, prod = make()
    svc.on_frame(trade(1), "c", 1)
    rest = {"market": "KRW-BTC", "timestamp": 1002, "trade_price": 1.0, "trade_volume": 2.0, "ask_bid": "BID",
            "sequential_id": 2}
    from coinpulse_upbit.protocol import parse_rest_trade

    assert svc.emit_trade(parse_rest_trade(rest, 5))
    assert not svc.emit_trade(parse_rest_trade(dict(rest, sequential_id=1), 5))
    assert svc.stats.backfilled == 1 and svc.stats.duplicates == 1
