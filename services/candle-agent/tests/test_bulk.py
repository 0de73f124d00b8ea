"""bulk.py's two guarantees behind the agent's offset commits:

- the committed offset of a chunked partition covers only chunks the agent has processed, across rebalances;
- the producer flush that Faust's commit relies on returns only when every buffered message (the state changelog,
  candles, mention hits) is with the Kafka client, however slowly the buffer's sender runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from coinpulse_candle_agent.bulk import ChunkMessage, TrackedBuffer, contiguous_end, drain, use_bulk_transport
from faust.transport.producer import ProducerBuffer
from faust.types import TP

TOPIC = "trades"
TP0 = TP(TOPIC, 0)


async def _noop(*_: object, **__: object) -> None:
    return None


def _consumer(earliest: int = 0):
    """The bulk consumer as the agent's app builds it, with no broker behind it: records are handed to `getmany`
    directly, rebalances are the consumer's own callbacks (the app's are no-ops), and the broker's answers (the
    committed and earliest offsets, seeks) are stubs; `c.seeks` lists the seeks asked for."""
    app = faust.App("test-bulk", broker="kafka://127.0.0.1:9", store="memory://")
    use_bulk_transport(app, {TOPIC})
    c = app.transport.create_consumer(callback=_noop, on_partitions_revoked=_noop, on_partitions_assigned=_noop)
    c.highwater = lambda tp: 0  # type: ignore[method-assign]
    c.assignment = lambda: {TP0}  # type: ignore[method-assign]
    c.broker_earliest = earliest
    c.seeks = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: c.broker_earliest for tp in tps}

    async def seek(tp: TP, offset: int) -> None:
        c.seeks.append((tp, offset))

    async def seek_wait(offsets: dict[TP, int]) -> None:
        c.seeks.extend(offsets.items())

    c.earliest_offsets, c.seek, c.seek_wait = earliest_offsets, seek, seek_wait
    return app, c


def _records(first: int, end: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=o, timestamp=1, timestamp_type=0, serialized_value_size=1)
            for o in range(first, end)]


async def _fetch(c, *runs: tuple[int, int]) -> list[ChunkMessage]:
    out = []
    for first, end in runs:
        recs = _records(first, end)

        async def wait_next_records(timeout: float, recs: list[SimpleNamespace] = recs):  # noqa: ASYNC109
            return {TP0: recs}, None
        c._wait_next_records = wait_next_records
        async for _, m in c.getmany(1.0):
            out.append(m)
    return out


async def _assign(app, c, generation: int, committed: int | None) -> None:
    """A rebalance's assignment, then the seek Faust performs once recovery is done."""
    app.consumer_generation_id = generation  # as aiokafka's rebalance listener does before the consumer's callback
    await c.on_partitions_assigned({TP0}, generation)

    async def seek_to_committed() -> dict[TP, int | None]:
        return {TP0: committed}

    c.seek_to_committed = seek_to_committed
    await c.perform_seek()


def _commit(c) -> int | None:
    off = c._new_offset(TP0)
    if off is not None:
        c._committed_offset[TP0] = off
    return off


def test_contiguous_end_stops_at_the_first_chunk_not_yet_acked():
    chunks = [(200, 299), (0, 99), (400, 499)]
    assert contiguous_end(chunks, 0) == 100 and chunks == [(200, 299), (400, 499)]
    assert contiguous_end(chunks, 100) is None and chunks == [(200, 299), (400, 499)]
    assert contiguous_end([(50, 149), (150, 150)], 100) == 151  # a re-delivered chunk overlapping the base
    assert contiguous_end([(0, 99)], None) is None


async def test_commit_covers_only_processed_chunks():
    app, c = _consumer()
    await _assign(app, c, 1, None)
    a, b, c_, d = await _fetch(c, (0, 100), (100, 200), (200, 300), (300, 400))
    assert _commit(c) is None, "nothing processed yet"
    c.chunk_done(b)
    assert _commit(c) is None, "chunk a (offsets 0..99) is not processed"
    c.chunk_done(a)
    assert _commit(c) == 200
    c.chunk_done(d)
    assert _commit(c) is None
    c.chunk_done(c_)
    assert _commit(c) == 400


async def test_a_chunk_finished_during_a_rebalance_does_not_commit_the_chunks_fetched_after_it():
    """CI lost six candles of one market this way (with Faust's bookkeeping): the chunk the agent finished while
    Faust revoked the partition was recorded after Faust had cleared its acks, and after the reassignment the first
    commit filled the fetch-time gaps of every chunk below it, processed or not; a kill -9 then skipped them."""
    app, c = _consumer()
    await _assign(app, c, 1, None)
    a, b, c_, d, e = await _fetch(c, (0, 100), (100, 200), (200, 300), (300, 400), (400, 500))
    c.chunk_done(a)
    assert _commit(c) == 100
    c.chunk_done(b)
    c.chunk_done(c_)  # processed, not yet committed
    await c.on_partitions_revoked({TP0})
    c.chunk_done(d)  # Faust waits for the agent's current chunk after the revocation began
    await _assign(app, c, 2, 100)
    c.chunk_done(e)  # a chunk of the old assignment, processed late: counts for nothing
    b2, c2, d2, e2 = await _fetch(c, (100, 200), (200, 300), (300, 400), (400, 500))
    c.chunk_done(b2)
    assert _commit(c) == 200, "c2, d2 and e2 are fetched, not processed"
    c.chunk_done(c2)
    c.chunk_done(d2)
    assert _commit(c) == 400


async def test_fausts_own_acks_do_not_move_a_chunked_partitions_commit():
    """The stream's inline ack (Faust's Cython iterator) still records each chunk's last offset; it must not count."""
    app, c = _consumer()
    await _assign(app, c, 1, None)
    (a,) = await _fetch(c, (0, 100))
    c._acked[TP0].append(a.offset)
    assert _commit(c) is None
    c.chunk_done(a)
    assert _commit(c) == 100


async def test_a_partition_without_a_committed_offset_is_read_again_from_its_first_offset():
    """aiokafka's seek to the committed offsets leaves such a partition where its fetcher got to: the chunks fetched
    before the seek (which the stream drops) were never read again (CI and a local run lost candles this way)."""
    app, c = _consumer(earliest=0)
    await _assign(app, c, 1, None)
    assert c.seeks == [(TP0, 0)]


async def test_a_fetch_that_skips_offsets_is_refused_and_the_partition_read_again_from_the_gap():
    app, c = _consumer()
    await _assign(app, c, 1, 1000)
    assert c.seeks == []  # a committed offset: aiokafka's own seek
    (a,) = await _fetch(c, (1000, 1100))
    assert await _fetch(c, (1500, 1600)) == [] and c.seeks == [(TP0, 1100)] and c.gap_seeks == 1
    (b,) = await _fetch(c, (1050, 1200))  # overlapping what was given: only the new part
    assert (b.records[0].offset, b.offset) == (1100, 1199)
    c.chunk_done(a)
    c.chunk_done(b)
    assert _commit(c) == 1200


async def test_offsets_removed_by_retention_are_not_waited_for():
    app, c = _consumer(earliest=0)
    await _assign(app, c, 1, 1000)
    c.broker_earliest = 5000  # retention deleted the log up to 5000 while the partition was being read
    (a,) = await _fetch(c, (5000, 5100))
    assert c.seeks == [] and c.gap_seeks == 0
    c.chunk_done(a)
    assert _commit(c) == 5100, "offsets that no longer exist are not waited for"


async def test_a_recovery_seek_holds_the_flow_until_recovery_resumes_it():
    """Faust's recovery seeks to the committed offsets with the flow running, then empties the stream queues, then
    resumes the flow: what was fetched during the seek was dropped unseen (a dc.post partition stayed at its
    committed offset after a kill -9). The seek stops the flow; only recovery's resume starts it again."""
    app, c = _consumer()
    app.rebalancing = True  # set by Faust's rebalance listener until recovery's end
    c.resume_flow()
    await _assign(app, c, 1, 100)
    assert not c.flow_active and c.recovery_flow_holds == 1
    assert await _fetch(c, (100, 200)) == [], "nothing is handed to the stream queues recovery is about to empty"
    c.resume_flow()  # recovery: flow_control.resume() (the queue clear), then consumer.resume_flow()
    app.rebalancing = False
    (a,) = await _fetch(c, (100, 200))
    assert (a.records[0].offset, a.offset) == (100, 199)
    await c.perform_seek()  # a seek outside a rebalance (the stall re-seek) leaves the flow running
    assert c.flow_active and c.recovery_flow_holds == 1


async def _drain(c, tp: TP, runs: list[tuple[int, int]]) -> list:
    """Faust's own fetch loop (`Consumer._drain_messages`) over `runs` of `tp`; the messages it hands on."""
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    got: list = []

    async def wait_next_records(timeout: float):  # noqa: ASYNC109
        if not runs:
            fetcher._stopped.set()
            return {}, None
        first, end = runs.pop(0)
        recs = [SimpleNamespace(topic=tp.topic, partition=tp.partition, headers=[], key=None, value=b"",
                                checksum=None, serialized_key_size=0, **vars(r)) for r in _records(first, end)]
        return {tp: recs}, None

    async def callback(m) -> None:
        got.append(m)

    c._wait_next_records, c.callback = wait_next_records, callback
    await c._drain_messages(fetcher)
    return got


async def test_a_chunk_finished_after_a_seek_does_not_make_faust_drop_what_is_read_again():
    """The read offset a chunk fetched before the seek left behind: the chunks read again from the committed
    offset reach the stream, and the stale offset is counted."""
    app, c = _consumer()
    await _assign(app, c, 1, 100)
    c._read_offset[TP0] = 250  # set by the fetch loop when the callback of a chunk fetched before the seek returned
    got = await _drain(c, TP0, [(100, 200), (200, 300)])
    assert [(m.records[0].offset, m.offset) for m in got] == [(100, 199), (200, 299)]
    assert c.stale_read_offsets == 1


async def test_a_stale_read_offset_does_not_drop_the_records_of_a_per_record_topic():
    app, c = _consumer()
    docs = TP("docs", 0)
    c._read_offset[docs] = 250
    got = await _drain(c, docs, [(100, 103)])
    assert [m.offset for m in got] == [100, 101, 102]
    assert c.stale_read_offsets == 1


class SlowChannel:
    """Stands for a topic whose `publish_message` takes `delay_s` per message (a busy event loop, a full client
    queue)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
        await asyncio.sleep(self.delay_s)
        self.published.append(fut.n)


def _message(channel: SlowChannel, n: int) -> SimpleNamespace:
    return SimpleNamespace(n=n, message=SimpleNamespace(channel=channel))


async def _buffer(cls: type[ProducerBuffer]) -> ProducerBuffer:
    buf = cls()
    buf.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buf.start()
    return buf


async def test_fausts_own_flush_returns_with_messages_still_buffered():
    """Why bulk.py drains: the upstream flush gives up after a 0.1 s lull (if this starts failing, Faust fixed it
    and `drain` can go)."""
    ch = SlowChannel(0.3)
    buf = await _buffer(ProducerBuffer)
    try:
        for n in range(3):
            buf.put(_message(ch, n))
        await buf.flush()
        assert len(ch.published) < 3
    finally:
        while not buf.pending.empty():  # its stop would flush (and refuse: not running) what is left
            buf.pending.get_nowait()
        await buf.stop()


async def test_drain_returns_only_when_every_message_was_published():
    ch = SlowChannel(0.3)
    buf = await _buffer(TrackedBuffer)
    try:
        for n in range(3):
            buf.put(_message(ch, n))
        await drain(buf)
        assert ch.published == [0, 1, 2]
        assert buf.size == 0 and buf.in_flight == 0
    finally:
        await buf.stop()


async def test_drain_waits_for_the_message_the_sender_has_taken_from_the_queue():
    ch = SlowChannel(0.3)
    buf = await _buffer(TrackedBuffer)
    try:
        buf.put(_message(ch, 7))
        while buf.size:  # noqa: ASYNC110 - the sender takes it: the queue empties, the message is not yet published
            await asyncio.sleep(0.001)
        assert buf.in_flight == 1
        await drain(buf)
        assert ch.published == [7]
    finally:
        await buf.stop()


def test_the_consumer_finds_an_internal_topic_created_just_before_it_subscribed():
    """Faust creates the mention-hits topic just before subscribing; when the broker's metadata does not show it yet,
    the group forms without it, and the consumer rebalances onto it only at its next metadata refresh (a fresh-clone
    demo waited aiokafka's default 5 min for its first mentions). The app refreshes within seconds."""
    from coinpulse_candle_agent.app import CandleAgent
    from coinpulse_candle_agent.settings import CandleSettings

    app = CandleAgent(CandleSettings(), trade_partitions=3).app
    assert app.conf.consumer_metadata_max_age_ms <= 10_000


def test_an_input_partition_neither_active_paused_nor_buffered_is_made_active_again():
    """Faust fetches only its active partitions; one that fell out of every set is fetched by the client but never
    handed on (CI: a worker restarted after a kill -9 got no record of one trade partition). The idle timer's check
    puts it back, and only input partitions that are not legitimately held back."""
    from coinpulse_candle_agent.app import CandleAgent
    from coinpulse_candle_agent.settings import CandleSettings

    s = CandleSettings()
    agent = CandleAgent(s, trade_partitions=3)
    c = agent.app.consumer
    lost, paused, buffered, kept = (TP(s.candle_trade_topic, p) for p in range(4))
    other = TP("coinpulse-candle-agent-__assignor-__leader", 0)
    c._active_partitions = {kept}
    c._paused_partitions, c._buffered_partitions = {paused}, {buffered}
    agent._reactivate_lost({lost, paused, buffered, kept, other})
    assert c._active_partitions == {kept, lost}
    assert agent.metrics["partitions_reactivated"] == 1
    agent._reactivate_lost({lost, paused, buffered, kept, other})
    assert agent.metrics["partitions_reactivated"] == 1
