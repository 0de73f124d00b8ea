"""The dead-letter record (coinpulse_common.deadletter): its field rules, and that it encodes with the real
`dead_letter.avsc` through the project's codec (against the client library's in-memory registry)."""

import datetime as dt
import time

import pytest
from coinpulse_common import avro
from coinpulse_common.deadletter import MAX_PAYLOAD_BYTES, MAX_REASON_CHARS, dead_letter_record
from coinpulse_common.kafka import DeadLetters
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

pytestmark = pytest.mark.unit


def test_fields_follow_the_rules():
    before = int(time.time() * 1000)
    rec = dead_letter_record("crawl-dc", "x" * 5000, "caf\udce9", source="https://e/1", key=b"KRW-\xffBTC",
                             context={"seq": 7, "ratio": 0.5, "none": None})
    after = int(time.time() * 1000)
    assert set(rec) == set(avro.schema_fields("dead_letter"))
    assert rec["service"] == "crawl-dc" and rec["reason"] == "x" * MAX_REASON_CHARS
    assert before <= rec["failed_at"] <= after
    assert rec["payload"] == b"caf\xe9"  # the byte a surrogateescape decode let through, as it was
    assert rec["key"] == "KRW-\ufffdBTC" and rec["source"] == "https://e/1"
    assert rec["context"] == {"seq": "7", "ratio": "0.5", "none": "None"}


def test_payload_is_cut_and_defaults():
    rec = dead_letter_record("sink", "r", b"\x01" * (MAX_PAYLOAD_BYTES + 10), failed_at_ms=123)
    assert len(rec["payload"]) == MAX_PAYLOAD_BYTES and rec["failed_at"] == 123
    rec = dead_letter_record("sink", "r", None)
    assert rec["payload"] == b"" and rec["key"] is None and rec["source"] is None and rec["context"] == {}
    assert dead_letter_record("sink", "r", bytearray(b"ab"))["payload"] == b"ab"


@pytest.fixture
def registry(monkeypatch) -> SchemaRegistryClient:
    """The in-memory registry with the real dead-letter schema registered for dlq.crawl-dc."""
    client = SchemaRegistryClient.new_client({"url": "mock://deadletter"})
    client.register_schema("dlq.crawl-dc-value", Schema(avro.schema_text("dead_letter"), "AVRO"))
    monkeypatch.setattr(avro, "registry_client", lambda url=None: client)
    return client


def test_the_record_encodes_with_the_dead_letter_schema(registry):
    codec = avro.TopicCodec("dlq.crawl-dc")
    rec = dead_letter_record("crawl-dc", "parse failed", "<html>\udcff", source="u", key="bitcoin/1",
                             context={"offset": 9}, failed_at_ms=1_700_000_000_123)
    back = codec.decode(codec.encode(rec))
    assert back["failed_at"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC)
    assert {k: v for k, v in back.items() if k != "failed_at"} == {
        "service": "crawl-dc", "reason": "parse failed", "source": "u", "key": "bitcoin/1",
        "payload": b"<html>\xff", "context": {"offset": "9"}}


class _Producer:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))


def test_dead_letters_send_produces_the_record(registry):
    prod = _Producer()
    dl = DeadLetters("crawl-dc", prod)
    dl.send("r" * 3000, "payload", source="s", key="bitcoin/2", context={"n": 1})
    (topic, key, value), = prod.sent
    back = avro.TopicCodec("dlq.crawl-dc").decode(value)
    assert (topic, key, dl.count) == ("dlq.crawl-dc", b"bitcoin/2", 1)
    assert back["reason"] == "r" * MAX_REASON_CHARS and back["payload"] == b"payload"
    assert back["service"] == "crawl-dc" and back["context"] == {"n": "1"}
