"""Kafka for tests and benchmarks: read a topic to its end, count its records, an in-memory producer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import consumer
from coinpulse_common.settings import Settings
from confluent_kafka import KafkaError, Message, TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from coinpulse_testing.wait import WaitTimeout


def read_messages(settings: Settings, topic: str, timeout: float = 30.0, complete: bool = False,
                  each: Callable[[Message], Any] | None = None, **config: Any) -> list[Any]:
    """Every record of `topic` from offset 0 of every partition up to its end (a read_committed consumer of a fresh
    group; `config` overrides consumer settings), as messages or, with `each`, as what `each` makes of each one.

    After `timeout` s it returns what it read, or, with `complete`, raises WaitTimeout; with `complete` a consumer
    error raises too (otherwise errored polls are skipped)."""
    c = consumer(f"read-{topic}-{time.monotonic_ns()}", settings, **{"enable.partition.eof": True, **config})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        left, out = set(parts), []
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() >= deadline:
                if complete:
                    raise WaitTimeout(f"{topic} not read to its end in {timeout:g} s")
                break
            for m in c.consume(1000, timeout=1.0):
                err = m.error()
                if err is None:
                    out.append(m if each is None else each(m))
                elif err.code() == KafkaError._PARTITION_EOF:
                    left.discard(m.partition())
                elif complete:
                    raise RuntimeError(f"reading {topic}: {err}")
        return out
    finally:
        c.close()


def read_values(settings: Settings, topic: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The Avro values of every record of `topic` (see read_messages), decoded with the registry's schemas."""
    de = AvroDeserializer(registry_client(settings.registry))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return read_messages(settings, topic, timeout, each=lambda m: de(m.value(), ctx))


def topic_size(settings: Settings, topic: str) -> int:
    """Records in `topic` by its watermarks (high - low over the partitions; transaction markers included)."""
    c = consumer(f"size-{topic}-{time.monotonic_ns()}", settings)
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        c.close()


class MemoryProducer:
    """Stands in for confluent_kafka.Producer in unit tests: keeps (topic, key, value) of every produced record;
    refuses with BufferError like a full queue once it holds `capacity` records."""

    def __init__(self, capacity: int = 10**9) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []
        self.capacity = capacity

    def produce(self, topic: str, value: bytes, key: bytes | None = None, timestamp: int = 0) -> None:
        if len(self.records) >= self.capacity:
            raise BufferError("queue full")
        self.records.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0
