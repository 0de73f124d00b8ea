"""The fast wire codec against the real registry (Apicurio's Confluent-compatible API, unique subjects): the
encoder finds the id of exactly its schema and writes what TopicCodec reads; a subject holding another schema, or
none, is refused after `wait_s`, naming the subject and the fix; never another schema's id."""

from __future__ import annotations

import pytest
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec, registry_client, schema_text
from coinpulse_common.wire import FastDecoder, FastEncoder, SchemaNotRegistered
from confluent_kafka.schema_registry import Schema

pytestmark = pytest.mark.integration

BASE = 1_767_225_600_000
CANDLE = {"market": "KRW-BTC", "interval": "1m", "bucket_start": BASE, "open": 1.0, "high": 2.0, "low": 0.5,
          "close": 1.5, "volume": 3.0, "quote_volume": 4.5, "vwap": 1.5, "trade_count": 3, "buy_volume": 1.0,
          "sell_volume": 2.0, "first_trade_at": BASE + 1, "last_trade_at": BASE + 59_000, "revision": 2,
          "emitted_at": BASE + 70_000}


def test_the_exact_schema_is_found_and_written_as_topic_codec_writes(stack, unique):
    topic = f"it-wire-{unique}.candle.1m"
    ours = registry_client(stack.registry).register_schema(f"{topic}-value", Schema(schema_text("candle"), "AVRO"))
    enc = FastEncoder(stack, topic, "candle", wait_s=5.0)
    assert enc.schema_id == ours
    data = enc.encode(CANDLE)
    codec = TopicCodec(topic, stack, schema_topic=topics.CANDLE_1M)
    assert data == codec.encode(CANDLE)
    assert FastDecoder(stack).decode(data) == CANDLE  # timestamps as epoch ms


def test_another_schema_under_the_subject_is_refused_never_used(stack, unique):
    topic = f"it-wire-{unique}.candle.1m"
    registry_client(stack.registry).register_schema(f"{topic}-value", Schema(schema_text("dead_letter"), "AVRO"))
    with pytest.raises(SchemaNotRegistered) as e:
        FastEncoder(stack.registry, topic, "candle", wait_s=1.0)
    assert f"'{topic}-value'" in str(e.value) and "uv run coinpulse up" in str(e.value)


def test_a_subject_without_any_schema_is_refused_at_the_first_value(stack, unique):
    topic = f"it-wire-{unique}.candle.1m"
    enc = FastEncoder(stack, topic, "candle", wait_s=1.0, lazy=True)
    with pytest.raises(SchemaNotRegistered) as e:
        enc.encode(CANDLE)
    assert f"{topic}-value" in str(e.value) and "not found" in str(e.value) and "uv run coinpulse up" in str(e.value)
