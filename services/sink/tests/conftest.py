"""Fixtures for the sink's integration tests: an isolated namespace (topics, schemas, connectors, S3 prefix)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from botocore.exceptions import BotoCoreError
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec, schema_text
from coinpulse_common.kafka import producer
from coinpulse_common.s3 import client as s3_client
from coinpulse_testing.kafka import topic_size
from coinpulse_testing.net import free_port
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

NS_TOPICS = [topics.UPBIT_TRADE, topics.UPBIT_TICKER, topics.DC_POST, topics.DC_COMMENT, topics.CANDLE_1M,
             topics.CANDLE_5M, topics.CANDLE_1H, topics.MENTION_1M, topics.UPBIT_RAW, topics.DC_RAW,
             topics.dlq("sink")]


@dataclass
class Namespace:
    ns: str
    settings: Any
    producer: Producer
    _codecs: dict[str, TopicCodec]

    def topic(self, base: str) -> str:
        return f"{self.ns}.{base}"

    def codec(self, base: str) -> TopicCodec:
        if base not in self._codecs:
            self._codecs[base] = TopicCodec(self.topic(base), self.settings, schema_topic=base)
        return self._codecs[base]

    def send(self, base: str, key: str, value: dict[str, Any]) -> None:
        self.producer.produce(self.topic(base), key=key.encode(), value=self.codec(base).encode(value))

    def send_raw(self, base: str, key: str, value: bytes) -> None:
        self.producer.produce(self.topic(base), key=key.encode(), value=value)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def dead_letters(self) -> int:
        """Records in the namespace's Connect dead-letter topic."""
        return topic_size(self.settings, self.topic("dlq.connect"))

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.settings.pg_dsn()) as c:
            return c.execute(sql.format(silver=f'"{self.ns}_silver"', gold=f'"{self.ns}_gold"',
                                        bronze=f'"{self.ns}_bronze"'), params).fetchall()


@pytest.fixture
def namespace(stack, unique) -> Iterator[Namespace]:
    """Topics `<ns>.<topic>` with their schemas, migrated schemas `<ns>_silver/...`; all removed afterwards."""
    from coinpulse_sink.db import drop_namespace, migrate
    from coinpulse_sink.naming import Names
    from coinpulse_sink.settings import SinkSettings

    ns = f"t{unique}"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    reg = SchemaRegistryClient({"url": stack.registry})
    names = [f"{ns}.{t}" for t in NS_TOPICS] + [f"{ns}.dlq.connect"]
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        fut.result()
    for t in NS_TOPICS:
        reg.register_schema(f"{ns}.{t}-value", Schema(schema_text(topics.BY_NAME[t].schema), "AVRO"))
    s = SinkSettings(sink_namespace=ns)
    migrate(s, Names(ns))
    yield Namespace(ns, stack, producer(stack), {})
    # teardown: connectors of this namespace, its schemas, topics and objects
    for c in httpx.get(f"{stack.connect}/connectors", timeout=30).json():
        if c.startswith(f"{ns}-"):
            httpx.delete(f"{stack.connect}/connectors/{c}", timeout=30)
    drop_namespace(s, Names(ns))
    admin.delete_topics([*names, f"{ns}.coinpulse-sink-rewound"])  # the rewinder's ledger, when it made one
    try:
        s3 = s3_client(stack)
        for o in s3.list_objects_v2(Bucket=stack.s3_bucket, Prefix=f"{ns}/").get("Contents", []):
            s3.delete_object(Bucket=stack.s3_bucket, Key=o["Key"])
    except BotoCoreError as e:  # cleanup only; a stack restart by another test must not fail this one
        print(f"could not remove s3://{stack.s3_bucket}/{ns}/: {e}")


def candle_sink(ns: Namespace):
    """A started SinkService of the namespace running only the gold-candles connector (no bronze sink)."""
    from coinpulse_sink.service import SinkService
    from coinpulse_sink.settings import SinkSettings

    svc = SinkService(SinkSettings(sink_namespace=ns.ns, sink_metrics_port=free_port(), sink_bronze=False,
                                   sink_connectors="gold-candles", sink_supervise_interval_s=1.0))
    svc.start()
    return svc


def now_ms() -> int:
    return int(time.time() * 1000)


def trade(i: int, market: str = "KRW-BTC", price: float = 100.0, t0: int | None = None) -> dict[str, Any]:
    t0 = now_ms() - 60_000 if t0 is None else t0
    return {"market": market, "sequential_id": 10_000 + i, "trade_timestamp": t0 + i, "price": price,
            "volume": 0.5 + i, "ask_bid": "BID" if i % 2 else "ASK", "prev_closing_price": 99.0, "change": "RISE",
            "change_price": 1.0, "stream_type": "REALTIME", "backfilled": False, "received_at": t0 + i + 5}
