"""Hand records to Kafka without ever blocking the socket reader.

`produce()` into librdkafka is non-blocking; when its queue is full the record waits in a bounded deque that the
pump task drains. When the deque is full too, the record is refused: counted, logged and reported to the caller
(which un-sees a refused trade and schedules a backfill for its market, so the trade is not lost).

A record whose delivery fails with a retriable error (the broker was unreachable for the whole
message.timeout.ms, a transport error) is sent again; one that fails for good is handed to `on_failed` (emit.py
un-sees the trade and schedules a backfill for its market). Nothing is dropped on a delivery report.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from coinpulse_common.logging import get_logger
from confluent_kafka import KafkaError, Message, Producer

from coinpulse_ingest_upbit.stats import Stats

log = get_logger("coinpulse.ingest_upbit.sink")
_RESEND = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
                     KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_ENOUGH_REPLICAS,
                     KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.REQUEST_TIMED_OUT})


class KafkaSink:
    def __init__(self, producer: Producer, stats: Stats, buffer_max: int = 100_000,
                 lag_topics: frozenset[str] = frozenset()):
        self.producer = producer
        self.stats = stats
        self.buffer_max = buffer_max
        self.pending: deque[tuple[str, bytes | None, bytes, int]] = deque()
        self.lag_topics = lag_topics
        self.on_failed: Callable[[Message], None] | None = None

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        st = self.stats
        if err is not None:
            st.delivery_errors += 1
            if err.retriable() or err.code() in _RESEND:
                st.delivery_retries += 1  # re-sent by the next pump (never refused: it was accepted once)
                self.pending.append((msg.topic(), msg.key(), msg.value(), msg.timestamp()[1]))
                if st.delivery_retries == 1 or st.delivery_retries % 10_000 == 0:
                    log.warning("delivery_failed_resending", topic=msg.topic(), error=str(err),
                                retries=st.delivery_retries)
                return
            log.error("delivery_failed", topic=msg.topic(), error=str(err))
            if self.on_failed is not None:
                self.on_failed(msg)
            return
        st.delivered += 1
        if not st.delivered & 7 and msg.topic() in self.lag_topics:  # a 1-in-8 sample keeps the hot path light
            ts = msg.timestamp()[1]
            if ts > 0:
                st.observe_lag(time.time() * 1000.0 - ts)

    def send(self, topic: str, key: bytes | None, value: bytes, ts_ms: int) -> bool:
        """Queue one record (timestamp = frame receive time). False when refused (buffer full)."""
        if self.pending:
            return self._hold(topic, key, value, ts_ms)
        try:
            self.producer.produce(topic, value, key, timestamp=ts_ms)
            return True
        except BufferError:
            return self._hold(topic, key, value, ts_ms)

    def _hold(self, topic: str, key: bytes | None, value: bytes, ts_ms: int) -> bool:
        if len(self.pending) >= self.buffer_max:
            self.stats.overflow += 1
            if self.stats.overflow == 1 or self.stats.overflow % 10_000 == 0:
                log.warning("producer_buffer_overflow", overflow=self.stats.overflow, topic=topic)
            return False
        self.pending.append((topic, key, value, ts_ms))
        return True

    def pump(self) -> int:
        """Serve delivery reports and move held records into the producer; returns records still held."""
        p = self.producer
        p.poll(0)
        pend = self.pending
        while pend:
            topic, key, value, ts = pend[0]
            try:
                p.produce(topic, value, key, timestamp=ts)
            except BufferError:
                break
            pend.popleft()
        self.stats.queue_depth = len(p) + len(pend)
        return len(pend)

    def warm_up(self, topics: Iterable[str]) -> None:
        """Fetch every topic's metadata before the first record, so the first records do not wait for it."""
        for topic in topics:
            md = self.producer.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None:
                log.warning("topic_missing", topic=topic, error=str(md.error) if md is not None else None)

    def flush(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            self.pump()
            self.producer.poll(0.05)
        left = self.producer.flush(max(0.0, deadline - time.monotonic()))
        return left + len(self.pending)
