"""The bronze S3 sink: upbit.raw and dc.raw -> JSON-lines objects in S3 (rules in `bronze.py`).

At-least-once with idempotent object names: an object is `put_object` first, its offsets are committed after
(synchronously, per partition), so a crash at any point re-reads from the start of an object and rewrites the same
key. An undecodable record goes to dlq.sink with the reason, and its offset is committed only once the dead letter
is acknowledged by Kafka.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from coinpulse_common import topics
from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import DeadLetters, consumer, producer
from coinpulse_common.logging import get_logger
from coinpulse_common.s3 import client as s3_client
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from coinpulse_sink import bronze
from coinpulse_sink.metrics import SinkMetrics
from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings

log = get_logger("coinpulse.sink.bronze")

BRONZE_TOPICS = (topics.UPBIT_RAW, topics.DC_RAW)


class BronzeS3Sink:
    def __init__(self, s: SinkSettings, names: Names, metrics: SinkMetrics):
        self.s, self.names, self.metrics = s, names, metrics
        self.topics = [names.topic(t) for t in BRONZE_TOPICS]
        self.batcher = bronze.Batcher(s.sink_bronze_flush_records, s.sink_bronze_flush_bytes, s.sink_bronze_max_age_s)
        self.s3 = s3_client(s)
        self.bucket = s.s3_bucket
        self.producer = producer(s)
        self.dead = DeadLetters("sink", self.producer, s)
        self.dead.topic = names.topic(topics.dlq("sink"))
        self._de = AvroDeserializer(registry_client(s.registry))
        group = names.connector_prefix + s.sink_bronze_group
        # static membership: a restarted sink takes its partitions back at once instead of after a session timeout
        self.consumer = consumer(group, s, **{"group.instance.id": f"{group}-{s.sink_bronze_instance or socket.gethostname()}"})
        self.pending_commit: dict[tuple[str, int], int] = {}  # offsets past dead letters with no open object
        self.reading: set[tuple[str, int]] = set()  # partitions with a record read since their assignment
        self.alive = False
        self.last_error: str | None = None
        self.objects_written = 0
        self._pg: psycopg.Connection | None = None

    # -- one record ---------------------------------------------------------------------------------------------
    def _decode(self, m: Message) -> dict[str, Any]:
        if m.value() is None:
            raise ValueError("null value (bronze topics carry no tombstones)")
        v = self._de(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
        if not isinstance(v, dict):
            raise ValueError(f"decoded to {type(v).__name__}, not a record")
        return v

    def _resume(self, topic: str, part: int, off: int) -> None:
        """The first record of an assignment: tell the batcher where the committed position was when the offsets
        up to this record hold no data (transaction markers, aborted records), so the next object accounts for
        them. A committed position below the log start is a retention overrun: counted, logged and left as the
        gap a reader must see."""
        tp = TopicPartition(topic, part)
        try:
            committed = self.consumer.committed([tp], timeout=10)[0].offset
            if committed < 0 or committed >= off:
                return
            low, _high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        except KafkaException as e:
            log.warning("bronze_resume_unknown", topic=topic, partition=part, error=str(e)[:200],
                        hint="the next object does not say what came before it; a reader may report a gap")
            return
        if committed >= low:
            self.batcher.resume(topic, part, committed)
        else:
            self.metrics.bronze_records_expired.labels(topic).inc(low - committed)
            log.error("bronze_retention_overrun", topic=topic, partition=part, committed=committed,
                      log_start=low, records_lost=low - committed,
                      hint="the topic's retention removed records the sink never read; raise its retention.ms or "
                           "keep the sink running, and rebuild the hours from another source")

    def handle(self, m: Message, now: float) -> list[bronze.Batch]:
        topic, part, off = m.topic(), m.partition(), m.offset()
        ts_type, ts = m.timestamp()
        if (topic, part) not in self.reading:
            self.reading.add((topic, part))
            self._resume(topic, part, off)
        try:
            value = self._decode(m)
            ms = bronze.event_ms(value, ts if ts_type else None)
            line = bronze.json_line(topic, part, off, ts if ts_type else None, m.key(), value)
        except Exception as e:  # noqa: BLE001 - any undecodable record is a dead letter, never a crash
            self.dead.send(f"undecodable bronze record: {type(e).__name__}: {e}", m.value() or b"", source=topic,
                           key=m.key().decode("utf-8", "replace") if m.key() else None,
                           context={"partition": str(part), "offset": str(off)})
            self.metrics.bronze_dead_letters.labels(topic).inc()
            if not self.batcher.skip(topic, part, off):
                self.pending_commit[(topic, part)] = off + 1
            return []
        source = bronze.source_of(self.names.base_topic(topic))
        return self.batcher.add(topic, part, off, source, ms, line, now)

    # -- writing ------------------------------------------------------------------------------------------------
    def write(self, b: bronze.Batch) -> bool:
        key = b.key(self.names.s3_prefix)
        body = b.body()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson",
                               Metadata=b.metadata())
        except (BotoCoreError, ClientError) as e:
            self.metrics.bronze_put_failures.inc()
            self.last_error = f"put {key}: {e}"
            log.error("bronze_put_failed", key=key, error=str(e)[:300])
            return False
        self._ledger(b, key, len(body))
        self._commit(b.topic, b.partition, b.end_offset + 1)
        self.objects_written += 1
        self.metrics.bronze_objects.labels(b.topic).inc()
        self.metrics.bronze_records.labels(b.topic).inc(b.records)
        self.metrics.bronze_bytes.labels(b.topic).inc(len(body))
        log.info("bronze_object", key=key, records=b.records, end_offset=b.end_offset)
        return True

    def _commit(self, topic: str, partition: int, offset: int) -> None:
        if self.dead.count and self.producer.flush(30) != 0:
            raise RuntimeError("dead letters not acknowledged; not committing past them")
        self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        self.pending_commit.pop((topic, partition), None)
        self.metrics.bronze_last_commit.set(time.time())

    def _ledger(self, b: bronze.Batch, key: str, size: int) -> None:
        """Best effort: the object list in S3 is the truth; the ledger makes it queryable from PostgreSQL."""
        try:
            if self._pg is None or self._pg.closed:
                self._pg = psycopg.connect(self.s.pg_dsn(), autocommit=True, connect_timeout=5)
            self._pg.execute(
                f'INSERT INTO "{self.names.bronze}".s3_objects (key, topic, partition, start_offset, end_offset, '
                "records, size_bytes, dt, hour, written_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s, now()) "
                "ON CONFLICT (key) DO UPDATE SET end_offset = EXCLUDED.end_offset, records = EXCLUDED.records, "
                "size_bytes = EXCLUDED.size_bytes, written_at = EXCLUDED.written_at",
                (key, b.topic, b.partition, b.start_offset, b.end_offset, b.records, size, b.day, b.hour))
        except psycopg.Error as e:
            log.warning("bronze_ledger_failed", key=key, error=str(e)[:200])
            self._pg = None

    def _write_ready(self, ready: list[bronze.Batch]) -> bool:
        failed: set[tuple[str, int]] = set()
        for b in ready:
            tp = (b.topic, b.partition)
            if tp in failed:
                continue
            if not self.write(b):
                # re-read from the object's first record: the same object is rebuilt and retried
                failed.add(tp)
                self.batcher.retry_from(b)
                self.pending_commit.pop(tp, None)
                self.consumer.seek(TopicPartition(b.topic, b.partition, b.start_offset))
        return not failed

    # -- loop ---------------------------------------------------------------------------------------------------
    def _on_revoke(self, _c: Any, parts: list[TopicPartition]) -> None:
        for p in parts:
            self.batcher.drop(p.topic, p.partition)
            self.pending_commit.pop((p.topic, p.partition), None)
            self.reading.discard((p.topic, p.partition))

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(self.topics, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self.alive = True
        backoff = 0.5
        try:
            while not stop.is_set():
                msgs = self.consumer.consume(1000, timeout=0.5)
                now = time.monotonic()
                ready: list[bronze.Batch] = []
                for m in msgs:
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("bronze_consume_error", error=str(m.error()))
                        continue
                    ready += self.handle(m, now)
                ready += self.batcher.due(now)
                ok = self._write_ready(ready)
                for (t, p), off in list(self.pending_commit.items()):
                    self._commit(t, p, off)
                if ok:
                    backoff = 0.5
                else:
                    stop.wait(backoff)
                    backoff = min(30.0, backoff * 2)
            self._write_ready(self.batcher.flush_all())
        finally:
            self.alive = False
            self.producer.flush(10)
            self.consumer.close()
            if self._pg is not None:
                self._pg.close()

    def health(self) -> dict[str, Any]:
        return {"alive": self.alive, "objects_written": self.objects_written, "open_objects": len(self.batcher.open),
                "dead_letters": self.dead.count, "last_error": self.last_error}
