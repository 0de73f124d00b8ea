"""Batch delivery for high-volume topics: one Faust event per fetched run of records instead of one per record.

Faust's consumer turns every fetched record into a Message, awaits the conductor's callback for it (flow control,
producer back-pressure, decode, queue put, two tasks in `wait_first`), and the stream then sets, acks and senses
each event on its own. At tens of thousands of trades per second that per-record machinery costs more than the
candle rules. For the topics named in `BulkTransport.bulk_topics`, `BulkConsumer.getmany` instead yields one
`ChunkMessage` per topic-partition and fetch: the message carries the raw aiokafka records in `.records`, and its
offset is the last record's. Everything else stays Faust's:

- the chunk travels through the conductor, the topic's queue and the agent's stream like any message, so
  flow control, back-pressure, rebalance waits (`wait_empty`) and acking are unchanged;
- the committed offset of a bulk topic's partition is this module's own (`BulkConsumer._new_offset`): the agent
  reports each chunk it has processed (`chunk_done`, after the chunk's state went to the producer), and the offset
  moves only across a contiguous run of processed chunks that starts exactly at the committed offset (before the
  first commit: at the first offset fetched after the last seek). A chunk fetched before the latest rebalance or
  seek (an older `epoch`) counts for nothing: it is fetched again from the committed offset. (At-least-once) Faust
  flushes the producer (state changelog, candles) before it commits.

Why not Faust's own bookkeeping: Faust registered the offsets before a chunk's last one as an "acknowledged gap"
when they were fetched, and at commit time it fills every gap below the highest acked offset. Its acked list also
survives a rebalance: the chunk the agent finished while Faust revoked the partition (Faust waits for it) was
recorded after the list had been cleared. After the reassignment that stale offset was the highest acked one, so
the first commit filled the gaps of every chunk fetched since, processed or not, and a kill -9 then lost those
chunks for good (CI: six candles of one market missing after two kills and a restart). Faust's head check also
lets a commit pass over one unacked offset, and is skipped while the committed offset is 0. (Faust's Cython stream
iterator acks inline, so `Consumer.ack` cannot be overridden; hence the agent's explicit report.)

Faust's fetch loop also drops, silently, any message whose offset is below the partition's read offset, and it
sets the read offset to a message's offset once the message's callback returns, whether or not a seek happened in
the meantime. A chunk fetched before a seek (recovery's seek to the committed offsets after a restart) and handed
over after it thus left the read offset above the committed offset, and every chunk read again from the commit was
dropped until the reading passed the stale offset (records between the commit and the stale offset would never be
processed, and the commit could no longer move). Found by reading Faust while chasing a stall after a kill -9; the
counter stayed 0 in those runs, so it was not that stall's cause. For bulk topics the read offset is cleared before each chunk is handed over:
`_in_run` alone decides what continues the run. For other topics a read offset beyond the record at hand is
cleared (Faust's gap tracking needs it otherwise: transaction markers leave offsets no record has). Each stale
offset found is counted (`coinpulse_candle_stale_read_offsets_total`).

Faust's recovery, at the end of a rebalance (`Recovery.on_recovery_completed`), resumes the stream partitions,
awaits the seek to the committed offsets with the flow running, and only then calls `flow_control.resume()`, which
empties every stream queue, before `resume_flow()`. What the fetcher queued during the seek, records from the new
positions, was thrown away unseen while the Kafka client's position had moved past it: a partition got nothing more
until new input revealed the gap (bulk topics, `_in_run`) or never (the mention topics: after a kill -9 and restart
one partition of dc.post stayed at its committed offset with its records unread, and their mentions were missing).
So `perform_seek` stops the flow when a rebalance calls it; recovery's own `resume_flow()`, after the queue clear,
starts it again, and the first fetch reads from the committed offsets (`coinpulse_candle_recovery_flow_holds_total`).

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

    __slots__ = ("epoch", "records")

    def __init__(self, tp: TP, records: list[Any], generation_id: int | None, epoch: int = 0):
        last = records[-1]
        super().__init__(
            tp.topic, tp.partition, last.offset,
            last.timestamp / 1000.0 if last.timestamp is not None else None,  # type: ignore[arg-type]
            last.timestamp_type, [], None, b"", None, 0, sum(r.serialized_value_size for r in records), tp,
            generation_id=generation_id,
        )
        self.records = records
        self.epoch = epoch  # BulkConsumer's seek epoch when fetched


def contiguous_end(chunks: list[tuple[int, int]] | None, base: int | None) -> int | None:
    """The next offset after the run of `chunks` ((first, last) offsets, any order) that starts at `base`, or None
    when that run is empty; the chunks it covers (and any already below `base`) are removed from the list."""
    if not chunks or base is None:
        return None
    chunks.sort()
    end, used = base, 0
    for first, last in chunks:
        if first > end:
            break  # a chunk not yet acked (or not yet fetched) lies between
        end = max(end, last + 1)
        used += 1
    del chunks[:used]
    return end if end > base else None


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"
        return consumer


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, but records of bulk topics come out as one ChunkMessage per partition, in an
    unbroken run from the committed offset, committed only as far as the agent has processed them, and only
    committed records are read (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunks: dict[TP, list[tuple[int, int]]] = {}  # processed, not yet committed: (first, last) offsets
        self._base: dict[TP, int] = {}  # where this epoch's run starts (the committed offset, or the first offset)
        self._next: dict[TP, int] = {}  # the next offset the agent must be given, in this epoch
        self._epoch = 0  # +1 at every rebalance and seek: chunks fetched before it count for nothing
        self.gap_seeks = 0  # times a fetch skipped offsets and the partition was read again from the gap
        self.stale_read_offsets = 0  # records Faust would have dropped below a stale read offset (getmany)
        self.recovery_flow_holds = 0  # recovery seeks run with the flow stopped (perform_seek)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._chunks.clear()
        self._base.clear()
        self._next.clear()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._new_epoch()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._new_epoch()
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Every stream partition back to its committed offset, one without a committed offset to its first offset
        (`auto_offset_reset=earliest`; aiokafka's seek to the committed offsets leaves such a partition wherever
        its fetcher got to, and the records fetched before a rebalance or before recovery finished, which the
        stream drops, were never read again). From here on the bulk partitions' runs start at those offsets.

        Called by a rebalance's recovery (Faust's `on_recovery_completed`) with the flow running, the flow is stopped
        first and stays stopped until recovery resumes it (module doc: the seek's records were cleared unseen)."""
        if self.app.rebalancing and self.flow_active:
            self.stop_flow()
            self.recovery_flow_holds += 1
        await super().perform_seek()
        changelogs = set(self.app.tables.changelog_topics)
        streams = [tp for tp in self.assignment() if tp.topic not in changelogs]
        fresh = [tp for tp in streams if not self._committed_offset[tp]]
        earliest = dict(await self.earliest_offsets(*fresh)) if fresh else {}
        if fresh:
            await self.seek_wait({tp: earliest[tp] for tp in fresh if earliest.get(tp) is not None})
        self._new_epoch()
        bulk = self.transport.bulk_topics  # type: ignore[attr-defined]
        for tp in streams:
            start = self._committed_offset[tp] or earliest.get(tp)
            if tp.topic in bulk and start is not None:
                self._base[tp] = self._next[tp] = start

    def chunk_done(self, message: ChunkMessage) -> None:
        """The agent has processed every record of `message` (and handed its state to the producer): its offsets
        may be committed once the chunks before it are done too. A chunk of an earlier epoch is ignored: it is
        fetched again from the committed offset."""
        if message.epoch == self._epoch:
            self._chunks.setdefault(message.tp, []).append((message.records[0].offset, message.offset))

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`: the end of the contiguous run of processed chunks from the committed
        offset (module doc); None when there is nothing new to commit."""
        if tp.topic not in self.transport.bulk_topics:  # type: ignore[attr-defined]
            return super()._new_offset(tp)
        self._acked[tp].clear()  # Faust's own acks of chunk messages (one offset each) are not used
        self._acked_index[tp].clear()
        return contiguous_end(self._chunks.get(tp), self._committed_offset[tp] or self._base.get(tp))

    async def _in_run(self, tp: TP, recs: list[Any]) -> list[Any]:
        """The part of a fetched run of `tp` that continues this epoch's run: records already given are dropped;
        a run that starts beyond the next offset (records fetched before a seek, then dropped) is refused and the
        partition is read again from the next offset, unless those offsets no longer exist (retention)."""
        nxt = self._next.get(tp)
        if nxt is None:
            return recs  # before the first seek of an assignment: read, never committed (an older epoch)
        if recs[-1].offset < nxt:
            return []
        if recs[0].offset > nxt:
            earliest = (await self.earliest_offsets(tp)).get(tp)
            if earliest is None or earliest <= nxt:
                self.gap_seeks += 1
                self.log.warning(f"fetched {tp} from offset {recs[0].offset}, expected {nxt}: reading it again "
                                 f"from {nxt}")
                await self.seek(tp, nxt)
                return []
            # deleted before they were read (the retention check reports such an overrun): nothing to wait for
            self.log.warning(f"{tp} offsets {nxt}..{recs[0].offset - 1} no longer exist (retention)")
            self._chunks.setdefault(tp, []).append((nxt, recs[0].offset - 1))
        elif recs[0].offset < nxt:
            recs = [r for r in recs if r.offset >= nxt]
        self._next[tp] = recs[-1].offset + 1
        return recs

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # type: ignore[override]  # noqa: ASYNC109 - Faust signature
        bulk_topics: frozenset[str] = self.transport.bulk_topics  # type: ignore[attr-defined]
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id, epoch = self.app.consumer_generation_id, self._epoch
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - as Faust's getmany: log and carry on
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        to_message = self._to_message

        def current() -> bool:
            return self.flow_active and self.app.consumer_generation_id == generation_id and self._epoch == epoch

        for tp, recs in records.items():
            if not current():
                break  # rebalancing or seeking: what is not yielded is fetched again from the committed offsets
            if not (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                continue
            if not recs:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in bulk_topics:
                recs = await self._in_run(tp, recs)
                if recs and current():
                    # Faust's fetch loop drops a message below the partition's read offset, and sets that offset
                    # after the message's callback returns, seek or no seek: a chunk fetched before a seek and
                    # finished after it leaves the read offset above what is read again (module doc). The run
                    # (`_in_run`) is what decides here.
                    self._clear_stale_read_offset(tp, recs[-1].offset)
                    self._read_offset[tp] = None
                    yield tp, ChunkMessage(tp, recs, generation_id, epoch)
            else:
                for rec in recs:
                    self._clear_stale_read_offset(tp, rec.offset)  # kept otherwise: Faust's gap tracking uses it
                    yield tp, to_message(tp, rec)

    def _clear_stale_read_offset(self, tp: TP, offset: int) -> None:
        """A read offset beyond a record fetched after the latest seek is stale (aiokafka discards what it fetched
        before a seek): cleared and counted, so Faust's fetch loop does not drop the record."""
        r = self._read_offset.get(tp)
        if r is not None and offset < r:
            self.stale_read_offsets += 1
            self._read_offset[tp] = None


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

