"""Seeding on start: the tail of the trade topic (`seed_tail` records per partition) into the deduper.

The trade topic is the record of what was produced: what its tail holds is seen (a restart doubles nothing), and each
market's watermark is where the gap backfill and the start-up history resume (they page only the downtime). A
record this service cannot read is counted and logged, never fatal; a partition not read to its end before the
deadline is logged (the deduper then knows less, the backfill pages further back: nothing is lost).
"""

from __future__ import annotations

import time
import uuid

from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import consumer
from coinpulse_common.logging import get_logger
from confluent_kafka import TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from coinpulse_ingest_upbit.dedupe import TradeDeduper
from coinpulse_ingest_upbit.emit import epoch_ms
from coinpulse_ingest_upbit.settings import IngestSettings

log = get_logger("coinpulse.ingest_upbit.seeding")
_PARTITION_EOF = -191


def seed_dedupe(settings: IngestSettings, dedupe: TradeDeduper, timeout_s: float = 60.0) -> int:
    """Read the tail of the trade topic so trades already in Kafka are known. Returns the trades read."""
    topic = settings.trade_topic
    c = consumer(f"ingest-upbit-seed-{uuid.uuid4().hex[:8]}", settings, **{"enable.partition.eof": True})
    de = AvroDeserializer(registry_client(settings.registry))
    ctx = SerializationContext(topic, MessageField.VALUE)
    n = bad = 0
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            log.warning("seed_topic_missing", topic=topic)
            return 0
        assign, remaining = [], set()
        for pid in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
            if hi > lo:
                assign.append(TopicPartition(topic, pid, max(lo, hi - settings.seed_tail)))
                remaining.add(pid)
        if not assign:
            return 0
        c.assign(assign)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in c.consume(2000, timeout=1.0):
                if msg.error():
                    if msg.error().code() == _PARTITION_EOF:
                        remaining.discard(msg.partition())
                    continue
                try:
                    rec = de(msg.value(), ctx)
                    dedupe.add(rec["market"], rec["sequential_id"], epoch_ms(rec["trade_timestamp"]))
                except Exception as e:  # noqa: BLE001 - a record this service cannot read must not stop it: count, log
                    bad += 1
                    if bad <= 5:
                        log.warning("seed_unreadable_record", partition=msg.partition(), offset=msg.offset(),
                                    error=str(e)[:200])
                    continue
                n += 1
        if remaining:
            log.warning("seed_incomplete", partitions=sorted(remaining))
    finally:
        c.close()
    log.info("seeded_dedupe", trades=n, unreadable=bad, markets=len(dedupe.markets()))
    return n
