"""Batch delivery for high-volume topics: one Faust event per fetched run of records instead of one per record.

Faust's consumer turns every fetched record into a Message, awaits the conductor's callback for it (flow control,
producer back-pressure, decode, queue put, two tasks in `wait_first`), and the stream then sets, acks and senses
each event on its own. At tens of thousands of trades per second that per-record machinery costs more than the
candle rules. For the topics named in `BulkTransport.bulk_topics`, `BulkConsumer.getmany` instead yields one
`ChunkMessage` per topic-partition and fetch: the message carries the raw aiokafka records in `.records`, and its
offset is the last record's. Everything else stays Faust's:

- the chunk travels through the conductor, the topic's queue and the agent's stream like any message, so
  flow control, back-pressure, rebalance waits (`wait_empty`) and acking are unchanged;
- the offsets before the chunk's last one are registered as an acknowledged gap (the mechanism Faust uses for
  compacted topics and transaction markers); the commit logic only fills a gap up to the highest *acked*
  offset, so a chunk's offsets are committed only after the agent has acked the chunk, i.e. processed all of it,
  and (at-least-once) Faust flushes the producer (state changelog, candles) before it commits.

Other topics (tables' changelogs during recovery, the mention topics) keep the per-record path.

The producer's `flush` drains its buffer completely. Faust commits offsets only after `producer.flush()`, and that
flush is what makes the state changelog (and the candles) durable before the input offsets that produced them are
committed. Faust's own buffer flush gives up when no message leaves the buffer within 0.1 s, and returns with
messages still queued. On a busy machine the event loop can be held that long by one chunk of trades. A commit then
covered state that was still in the buffer, and a kill -9 at that moment lost the state but kept the offsets: the
restarted agent skipped those trades and never emitted their candles.

The consumer also reads with isolation level read_committed (Faust asks aiokafka for read_uncommitted unless the
app itself runs exactly-once): crawl-dc writes one transaction per crawl cycle, and the documents of a cycle
aborted by a crash must not be counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message


class ChunkMessage(ConsumerMessage):
    """A consumer message standing for a run of records of one partition (`records`, in offset order)."""

    __slots__ = ("records",)

    def __init__(self, tp: TP, records: list[Any], generation_id: int | None):
        last = records[-1]
        super().__init__(
            tp.topic, tp.partition, last.offset,
            last.timestamp / 1000.0 if last.timestamp is not None else None,  # type: ignore[arg-type]
            last.timestamp_type, [], None, b"", None, 0, sum(r.serialized_value_size for r in records), tp,
            generation_id=generation_id,
        )
        self.records = records


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, but records of bulk topics come out as one ChunkMessage per partition, and only
    committed records are read."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # type: ignore[override]  # noqa: ASYNC109 - Faust signature
        bulk_topics: frozenset[str] = self.transport.bulk_topics  # type: ignore[attr-defined]
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - as Faust's getmany: log and carry on
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        to_message = self._to_message
        for tp, recs in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break  # rebalancing: what is not yielded is fetched again from the committed offsets
            if not (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                continue
            if not recs:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in bulk_topics:
                if len(recs) > 1:  # [first, last): acked once the chunk (offset `last`) is acked
                    await self._add_gap(tp, recs[0].offset, recs[-1].offset - 1)
                yield tp, ChunkMessage(tp, recs, generation_id)
            else:
                for rec in recs:
                    yield tp, to_message(tp, rec)


class TrackedBuffer(ProducerBuffer):
    """Faust's producer buffer, counting the message its sender has taken from the queue but not yet handed to the
    client (`size` does not count it)."""

    in_flight = 0

    async def _send_pending(self, fut: Any) -> None:
        # runs from the sender's `get` without a suspension in between: size + in_flight is exact
        self.in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1


async def drain(buffer: TrackedBuffer) -> None:
    """Until every buffered message is with the client (Faust's `ProducerBuffer.flush` returns after a 0.1 s lull
    with messages still queued)."""
    while buffer.size or buffer.in_flight:
        if buffer.size:
            await buffer.flush()
        else:
            await asyncio.sleep(0.001)


class DurableFlushProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer whose `flush` returns only once every buffered message is with the client and the
    client's own flush (every send acknowledged) is done (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tracked = TrackedBuffer(loop=self.loop, beacon=self.beacon)
        if getattr(self.buffer, "threaded_producer", None) is not None:
            tracked.threaded_producer = self.buffer.threaded_producer
        tracked.app = self.app
        self.buffer = tracked

    async def flush(self) -> None:
        assert isinstance(self.buffer, TrackedBuffer)
        await drain(self.buffer)
        await super().flush()


class BulkTransport(faust_aiokafka.Transport):
    Consumer = BulkConsumer
    Producer = DurableFlushProducer
    bulk_topics: frozenset[str] = frozenset()


def use_bulk_transport(app: Any, bulk_topics: set[str]) -> None:
    """Make `app` consume `bulk_topics` in chunks (call before the app starts)."""
    transport = type("AppBulkTransport", (BulkTransport,), {"bulk_topics": frozenset(bulk_topics)})
    app.transport = transport(app.conf.broker_consumer, app)

