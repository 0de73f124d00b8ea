"""Poison input becomes dead letters and the service lives; trades from a bad clock never reach the trade topic;
a failed delivery is sent again (or left for backfill), never forgotten; settings with a range are validated."""

from __future__ import annotations

import time

import orjson
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_ingest_upbit.service import UpbitIngest
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_testing.kafka import MemoryProducer
from coinpulse_upbit import protocol as P
from confluent_kafka import KafkaError
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def make(**settings) -> tuple[UpbitIngest, MemoryProducer]:
    reg = SchemaRegistryClient.new_client({"url": "mock://poison"})
    s = IngestSettings(markets="KRW-BTC", kafka_bootstrap="127.0.0.1:1", trade_topic="poison.trade",
                       ticker_topic="poison.ticker", orderbook_topic="poison.orderbook", raw_topic="poison.raw",
                       dlq_topic="poison.dlq", **settings)
    for stem, topic in (("trade", s.trade_topic), ("ticker", s.ticker_topic), ("orderbook", s.orderbook_topic),
                        ("raw_frame", s.raw_topic), ("dead_letter", s.dlq_topic)):
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    prod = MemoryProducer()
    return UpbitIngest(s, producer_=prod, registry=reg), prod


NOW = int(time.time() * 1000)
GOOD = {
    "trade": {"type": "trade", "code": "KRW-BTC", "trade_price": 100.0, "trade_volume": 1.5, "ask_bid": "BID",
              "prev_closing_price": 99.0, "change": "RISE", "change_price": 1.0, "trade_timestamp": NOW,
              "timestamp": NOW + 1, "sequential_id": 17, "stream_type": "REALTIME"},
    "ticker": {"type": "ticker", "code": "KRW-BTC", "trade_price": 100.0, "opening_price": 98.0, "high_price": 101.0,
               "low_price": 97.0, "prev_closing_price": 99.0, "change": "RISE", "signed_change_rate": 0.01,
               "trade_volume": 1.0, "acc_trade_volume_24h": 10.0, "acc_trade_price_24h": 1000.0,
               "trade_timestamp": NOW, "timestamp": NOW + 1, "stream_type": "REALTIME"},
    "orderbook": {"type": "orderbook", "code": "KRW-BTC", "total_ask_size": 2.0, "total_bid_size": 3.0,
                  "orderbook_units": [{"ask_price": 101.0, "bid_price": 100.0, "ask_size": 2.0, "bid_size": 3.0}],
                  "timestamp": NOW, "level": 0, "stream_type": "REALTIME"},
}
SIMPLE = {"trade": P.TRADE_FIELDS, "ticker": P.TICKER_FIELDS, "orderbook": P.ORDERBOOK_FIELDS}
COMMON = [[], [1], {}, {"a": 1}, True, False, 2**64 - 1]
NUMBER_BAD = [*COMMON, "abc", "²", "NaN", "inf", "-Infinity", "", 2**63]
INT_BAD = [*NUMBER_BAD, 1.5, "1.5", "-1", "١٢"]
STR_BAD = [*COMMON, 1, 1.5, -3]
KIND = {  # field -> what it must be; every field a silver record reads
    "type": "str", "code": "str", "ask_bid": "str", "change": "str", "stream_type": "str",
    "sequential_id": "int", "trade_timestamp": "int", "timestamp": "int",
}
REQUIRED = {  # null on these is a missing field (on the others it means absent)
    "trade": {"code", "trade_price", "trade_volume", "ask_bid", "sequential_id"},
    "ticker": {"code", "trade_price"},
    "orderbook": {"code", "orderbook_units", "timestamp"},
}


def bad_values(field: str) -> list:
    k = KIND.get(field, "number")
    return {"str": STR_BAD, "int": INT_BAD, "number": NUMBER_BAD}[k]


def cases():
    for kind, good in GOOD.items():
        for field in good:
            values = bad_values(field) + ([None] if field in REQUIRED[kind] else [])
            if field == "code":
                values.append("")
            if field == "ask_bid":
                values.append("SELL")
            if field == "orderbook_units":
                values = [{}, {"a": 1}, 1, 1.5, True, "x", [1], [[]], [{"ask_price": "x"}], None]  # [] is an empty book
            for simple in (False, True):
                for v in values:
                    yield pytest.param(kind, field, simple, v, id=f"{kind}-{'simple' if simple else 'default'}-"
                                                                  f"{field}-{v!r}"[:90])
    for unit_field in P.UNIT_FIELDS:
        for simple in (False, True):
            for v in NUMBER_BAD + [None]:
                yield pytest.param("orderbook", f"units.{unit_field}", simple, v,
                                   id=f"orderbook-{'simple' if simple else 'default'}-{unit_field}-{v!r}"[:90])


def frame(kind: str, field: str, simple: bool, v) -> bytes:
    m = orjson.loads(orjson.dumps(GOOD[kind]))
    if field.startswith("units."):
        m["orderbook_units"][0][field.split(".", 1)[1]] = v
    else:
        m[field] = v
    if simple:
        names = SIMPLE[kind]
        m = {names[k]: x for k, x in m.items()}
        if "orderbook_units" in GOOD[kind] or kind == "orderbook":
            m["obu"] = [{P.UNIT_FIELDS[k]: x for k, x in u.items()} if isinstance(u, dict) else u
                        for u in m["obu"]] if isinstance(m.get("obu"), list) else m.get("obu")
    return orjson.dumps(m)


def test_the_good_frames_of_the_table_make_records():
    svc, prod = make()
    for kind in GOOD:
        for simple in (False, True):
            svc.on_frame(frame(kind, "code", simple, "KRW-BTC"), "c", 1)
    assert svc.stats.dlq == 0
    assert (svc.stats.trades, svc.stats.tickers, svc.stats.orderbooks) == (1, 2, 2)  # the 2nd trade is a duplicate


@pytest.fixture(scope="module")
def shared():
    return make()


@pytest.mark.parametrize(("kind", "field", "simple", "v"), list(cases()))
def test_a_mistyped_field_is_a_dead_letter_and_the_service_goes_on(shared, kind, field, simple, v):
    svc, prod = shared  # one service for the whole table: it must survive every case
    prod.records.clear()
    dlq, trades = svc.stats.dlq, svc.stats.trades
    svc.on_frame(frame(kind, field, simple, v), "c", 1)  # no exception may escape
    dead = [svc.enc_dlq.decode(val) for t, _, val in prod.records if t == svc.s.dlq_topic]
    silver = [t for t, _, _ in prod.records if t not in (svc.s.dlq_topic, svc.s.raw_topic)]
    assert len(dead) == 1 and not silver, (dead, silver)
    assert dead[0]["reason"].startswith(("bad_field", "missing_field", "unknown_type")), dead[0]["reason"]
    assert svc.stats.dlq == dlq + 1  # counted in the metrics
    sid = 1000 + trades  # the next good frame still goes through
    svc.on_frame(frame("trade", "sequential_id", simple, sid), "c", 2)
    assert svc.stats.trades == trades + 1


@pytest.mark.parametrize("ty", [[], ["trade"], {}, {"a": 1}, 1, 1.5, True])
@pytest.mark.parametrize("name", ["type", "ty"])
def test_an_unhashable_or_mistyped_type_is_a_dead_letter(name, ty):
    svc, prod = make()
    svc.on_frame(orjson.dumps({name: ty, "code": "KRW-BTC"}), "c", 1)
    dead = [svc.enc_dlq.decode(val) for t, _, val in prod.records if t == svc.s.dlq_topic]
    assert len(dead) == 1 and dead[0]["reason"].startswith(f"bad_field: {name}=")


def test_a_trade_a_year_ahead_is_dead_lettered_and_later_trades_go_on():
    svc, prod = make()
    year = 365 * 86_400_000
    ahead = dict(GOOD["trade"], trade_timestamp=int(time.time() * 1000) + year, sequential_id=1)
    svc.on_frame(orjson.dumps(ahead), "c", 1)
    svc.on_frame(orjson.dumps(dict(GOOD["trade"], trade_timestamp=int(time.time() * 1000), sequential_id=2)), "c", 2)
    dead = [svc.enc_dlq.decode(val) for t, _, val in prod.records if t == svc.s.dlq_topic]
    trades = [svc.enc_trade.decode(val) for t, _, val in prod.records if t == svc.s.trade_topic]
    assert [d["reason"] for d in dead] == ["future_timestamp"]
    assert [t["sequential_id"] for t in trades] == [2]
    assert svc.stats.future_trades == 1
    assert not svc.dedupe.seen("KRW-BTC", 1)  # never counted as seen: its event time would be a lie
    assert (svc.dedupe.watermark("KRW-BTC") or 0) < int(time.time() * 1000) + 60_000


class Msg:
    def __init__(self, topic, key, value):
        self._t, self._k, self._v = topic, key, value

    def topic(self):
        return self._t

    def key(self):
        return self._k

    def value(self):
        return self._v

    def timestamp(self):
        return (1, 123)


def test_a_delivery_that_timed_out_is_sent_again_not_forgotten():
    svc, prod = make()
    svc.on_frame(orjson.dumps(GOOD["trade"]), "c", 1)
    topic, key, value = next(r for r in prod.records if r[0] == svc.s.trade_topic)
    prod.records.clear()
    svc.sink.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Msg(topic, key, value))
    svc.sink.pump()
    assert prod.records == [(topic, key, value)]
    assert svc.stats.delivery_retries == 1


def test_a_trade_that_fails_for_good_is_unseen_and_backfilled():
    svc, prod = make()
    svc.on_frame(orjson.dumps(GOOD["trade"]), "c", 1)
    topic, key, value = next(r for r in prod.records if r[0] == svc.s.trade_topic)
    assert svc.dedupe.seen("KRW-BTC", 17)
    svc.sink.on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), Msg(topic, key, value))
    assert not svc.dedupe.seen("KRW-BTC", 17)
    assert svc._pending["KRW-BTC"] == NOW  # a backfill pages back to it


def test_the_producer_keeps_retrying_for_the_delivery_timeout(monkeypatch):
    import coinpulse_ingest_upbit.service as service

    got = {}
    monkeypatch.setattr(service, "producer", lambda s, **kw: got.update(kw) or MemoryProducer())
    reg = SchemaRegistryClient.new_client({"url": "mock://timeout"})
    s = IngestSettings(kafka_bootstrap="127.0.0.1:1", trade_topic="to.trade", ticker_topic="to.ticker",
                       orderbook_topic="to.orderbook", raw_topic="to.raw", dlq_topic="to.dlq")
    for stem, topic in (("trade", s.trade_topic), ("ticker", s.ticker_topic), ("orderbook", s.orderbook_topic),
                        ("raw_frame", s.raw_topic), ("dead_letter", s.dlq_topic)):
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    UpbitIngest(s, registry=reg)
    assert got["message.timeout.ms"] == 7 * 86_400_000 > 300_000


@pytest.mark.parametrize(("name", "value"), [("ingest_delivery_timeout_s", 0), ("ingest_delivery_timeout_s", -1),
                                             ("ingest_delivery_timeout_s", 10**9), ("ingest_max_future_skew_s", 0),
                                             ("ingest_schema_wait_s", -5)])
def test_settings_out_of_range_are_refused_naming_the_setting(name, value):
    with pytest.raises(ValidationError, match=f"COINPULSE_{name.upper()}"):
        IngestSettings(**{name: value})
