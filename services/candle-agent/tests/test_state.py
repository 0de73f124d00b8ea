"""Crash consistency of the persisted engine state: a kill may cut a state flush anywhere.

The agent's contract (state.py), for both engines: outputs are confirmed before the flush that records them, a flush is sent before
its input offsets are committed, and after a restart the input after the committed offset is replayed against
whatever prefix of the changelog landed. Whatever the cut, the final candles (values and revisions) must be those
of the run that was never killed."""

from __future__ import annotations

import random
from typing import Any

import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.engine import CandleEngine
from coinpulse_candle_agent.mentions import DocHits, MentionEngine
from coinpulse_candle_agent.state import PartitionEngines, flush_order
from coinpulse_testing import synthetic

pytestmark = pytest.mark.unit

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 3_600_000
TIMING = Timing(2_000, 60_000)  # a short lateness, so buckets expire (and are deleted) within the run
CHUNK = 40
END = T0 + 3_600_000 * 2  # the final idle advance closes and expires everything


class ChangelogTable:
    """What PartitionEngines needs of a Faust table: `.data` and `send_changelog`, here recorded in a list."""

    def __init__(self, data: dict[bytes, bytes] | None = None):
        self.data: dict[bytes, Any] = dict(data or {})
        self.log: list[tuple[bytes, bytes | None]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes | None, **_: Any) -> None:
        self.log.append((key, value))


def compacted(log: list[tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    latest: dict[bytes, bytes | None] = {}
    for k, v in log:
        latest[k] = v
    return {k: v for k, v in latest.items() if v is not None}


def key(rec: dict[str, Any]) -> tuple:
    return rec.get("interval"), rec["market"], rec["bucket_start"]


def feed(eng: Any, item: Any) -> list[dict[str, Any]]:
    if isinstance(item, int):  # an event-time tick (mentions) or the idle timer
        return eng.advance(item)
    if isinstance(eng, CandleEngine):
        return eng.add(item).emits
    return eng.add(item)[1]


def run(table: ChangelogTable, chunks: list[list], out: dict[tuple, dict], factory: Any) -> list[list]:
    """Process chunks as the agent does (emit, then flush); returns each flush's changelog records."""
    engines = PartitionEngines(table, factory)
    flushes = []
    for chunk in chunks:
        eng, restored = engines.get(0)
        emits = list(restored)
        for item in chunk:
            emits += feed(eng, item)
        out.update({key(e): e for e in emits})
        before = len(table.log)
        engines.flush()
        flushes.append(table.log[before:])
    return flushes


def candle_input() -> list:
    trades = synthetic.trades(["KRW-BTC", "KRW-DOGE"], T0, 8 * 60_000, 200, seed=5)
    return synthetic.arrival_order(trades, seed=6, dup_rate=0.03, delays=(1_000, 20_000, 90_000), delay_rate=0.08)


def mention_input() -> list:
    """Posts and comments, some re-crawled with other counts (or without their body), and event-time ticks that
    jump past whole minutes (a quiet gallery)."""
    rnd = random.Random(7)
    items: list = []
    seen: list[DocHits] = []
    ts = T0
    for i in range(500):
        ts += rnd.randrange(0, 1_500) + (90_000 if rnd.random() < 0.01 else 0)
        version = len(items)  # the source record's offset
        if seen and rnd.random() < 0.15:
            old = rnd.choice(seen[-40:])
            items.append(old._replace(mentions=old.mentions + 1, has_body=rnd.random() < 0.8, version=version))
        else:
            doc = f"p:coin/{i}" if rnd.random() < 0.4 else f"c:coin/{i // 3}/{i}"
            h = DocHits(doc, rnd.choice(["KRW-BTC", "KRW-ETH"]), ts - rnd.randrange(0, 20_000), rnd.randrange(1, 4),
                        rnd.randrange(0, 2), rnd.randrange(0, 2), rnd.random() < 0.7 or doc.startswith("c:"), version)
            seen.append(h)
            items.append(h)
        if rnd.random() < 0.05:
            items.append(ts)
    return items


ENGINES = {"candles": (candle_input, lambda: CandleEngine(TIMING)),
           "mentions": (mention_input, lambda: MentionEngine(TIMING))}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_cut_of_every_flush_replays_to_the_uninterrupted_output(engine):
    make_input, factory = ENGINES[engine]
    items = make_input()
    chunks: list = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)] + [[END]]  # END: the idle timer
    straight: dict[tuple, dict] = {}
    flushes = run(ChangelogTable(), chunks, straight, factory)
    assert any(v is None for f in flushes[:-1] for _, v in f), "buckets must expire mid-stream, not only at the end"
    assert any(e["revision"] > 0 for e in straight.values()), "the scenario must revise its output"
    cuts = 0
    for k in range(len(chunks)):
        emitted_before: dict[tuple, dict] = {}
        run(ChangelogTable(), chunks[:k + 1], emitted_before, factory)  # confirmed before flush k was sent
        for j in range(len(flushes[k]) + 1):
            landed = [r for f in flushes[:k] for r in f] + flushes[k][:j]
            for committed in sorted({k, max(0, k - 3)}):  # offsets commit only fully flushed chunks
                out = dict(emitted_before)
                run(ChangelogTable(compacted(landed)), chunks[committed:], out, factory)
                assert out == straight, (k, j, committed)
                cuts += 1
    assert cuts > 200


def test_flush_order_puts_values_then_event_time_then_deletions():
    changes = [("1m|A|0", None), ("1m|B|0", {"x": 1}), ("5m|A|0", None), ("1m|C|0", {"x": 2}), ("w", {"w": 5})]
    assert flush_order(changes) == [("1m|B|0", {"x": 1}), ("1m|C|0", {"x": 2}), ("w", {"w": 5}),
                                    ("1m|A|0", None), ("5m|A|0", None)]
