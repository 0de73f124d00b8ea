"""The producer flush that Faust's offset commit relies on (bulk.py): it returns only when every buffered message
(the state changelog, candles, mention hits) is with the Kafka client, however slowly the buffer's sender runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from coinpulse_candle_agent.bulk import TrackedBuffer, drain
from faust.transport.producer import ProducerBuffer


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
