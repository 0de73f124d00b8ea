"""Kafka clients with coinpulse's defaults (confluent-kafka)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import AfterValidator, ValidationInfo

from coinpulse_common.avro import TopicCodec
from coinpulse_common.deadletter import dead_letter_record
from coinpulse_common.logging import get_logger
from coinpulse_common.settings import Settings, get_settings
from coinpulse_common.topics import dlq

log = get_logger("coinpulse.kafka")

# How long a producer may keep retrying a record while Kafka is unreachable, at most: librdkafka's
# message.timeout.ms and aiokafka's request_timeout_ms (Faust's producer_request_timeout) are 32-bit millisecond
# counts. Ingest and the candle agent both default to a week and type their setting `DeliveryTimeoutS`.
MAX_DELIVERY_TIMEOUT_S = 2_147_483
DEFAULT_DELIVERY_TIMEOUT_S = 7 * 86400.0


def delivery_timeout(v: float, variable: str) -> float:
    """`v` if it is a usable producer delivery timeout in seconds, else a ValueError naming `variable`."""
    if not 0 < v <= MAX_DELIVERY_TIMEOUT_S:
        raise ValueError(f"{variable} must be > 0 and <= {MAX_DELIVERY_TIMEOUT_S} seconds (the producer's timeout "
                         f"is a 32-bit millisecond count); got {v}")
    return v


def _delivery_timeout_field(v: float, info: ValidationInfo) -> float:
    return delivery_timeout(v, f"COINPULSE_{(info.field_name or 'DELIVERY_TIMEOUT_S').upper()}")


# a settings field holding a producer delivery timeout in seconds, checked against the bound above
DeliveryTimeoutS = Annotated[float, AfterValidator(_delivery_timeout_field)]


def producer(settings: Settings | None = None, **overrides: Any) -> Producer:
    """Idempotent producer, acks=all, lz4, small linger: ordering per partition and no duplicates on retry."""
    s = settings or get_settings()
    conf = {
        "bootstrap.servers": s.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(group: str, settings: Settings | None = None, **overrides: Any) -> Consumer:
    s = settings or get_settings()
    conf = {
        "bootstrap.servers": s.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(conf)


def admin(settings: Settings | None = None) -> AdminClient:
    s = settings or get_settings()
    return AdminClient({"bootstrap.servers": s.bootstrap})


def wait_for_broker(settings: Settings | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    a = admin(settings)
    while True:
        try:
            a.list_topics(timeout=2)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise


class DeadLetters:
    """Sends rejected input to `dlq.<service>` with the reason; counts every letter (nothing dropped silently).
    The record is `coinpulse_common.deadletter.dead_letter_record`'s."""

    def __init__(self, service: str, prod: Producer, settings: Settings | None = None):
        self.service = service
        self.topic = dlq(service)
        self._codec = TopicCodec(self.topic, settings)
        self._producer = prod
        self.count = 0

    def send(self, reason: str, payload: bytes | str, *, source: str | None = None, key: str | None = None,
             context: dict[str, str] | None = None) -> None:
        rec = dead_letter_record(self.service, reason, payload, source=source, key=key, context=context)
        self._producer.produce(self.topic, key=(key or "").encode(), value=self._codec.encode(rec))
        self.count += 1
        log.warning("dead_letter", service=self.service, reason=reason[:200], source=source)
