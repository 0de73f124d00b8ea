"""Engine state per input partition, persisted in a changelog-backed Faust table the agent writes itself.

Faust's windowed tables are not used (restored windows never expire, closing follows the wall clock). Each input
partition p has one engine (CandleEngine or MentionEngine); its state records are stored in the table under
`<p>|<record key>` and written to changelog partition p (the table is co-partitioned with the input topic).
Writes are sent before the batch's input offsets are acknowledged, and Faust flushes the producer before it
commits offsets, so after a crash the changelog holds at least everything the committed offsets cover;
re-delivered input is recognised by the per-bucket sequential_id sets (candles) or the per-document versions
(mentions).

A kill can cut a flush anywhere: any prefix of it may be all that lands. So a flush is ordered such that every
prefix is a state the replay of uncommitted input repairs: bucket values first, then the partition's event time,
then deletions of expired buckets. A deletion that landed without the event time that expired the bucket would
let the replayed trades recreate the bucket from nothing, already past its close (a full minute of revisions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from coinpulse_common.logging import get_logger

log = get_logger("coinpulse.candle_agent.state")


class Engine(Protocol):
    watermark: int | None

    def take_changes(self) -> list[tuple[str, dict[str, Any] | None]]: ...

    def load(self, items: Any) -> list[dict[str, Any]]: ...

    def advance(self, to_ms: int) -> list[dict[str, Any]]: ...


def _dumps(v: dict[str, Any]) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


def flush_order(changes: list[tuple[str, dict[str, Any] | None]]) -> list[tuple[str, dict[str, Any] | None]]:
    """Values (the event time, which engines hand out last, among them: last), then deletions (module doc)."""
    values = [c for c in changes if c[1] is not None]
    return values + [c for c in changes if c[1] is None]


class PartitionEngines:
    def __init__(self, table: Any, factory: Callable[[], Engine], max_future_ms: int | None = None,
                 name: str = "engine"):
        self.table = table
        self.factory = factory
        self.max_future_ms = max_future_ms  # a restored event time further ahead of the wall clock is reported
        self.name = name
        self.ahead_ms: dict[int, int] = {}  # partition -> how far its restored event time was ahead of the clock
        self.engines: dict[int, Engine] = {}
        # idle-timer anchors: (wall ms of last input, event time then, last input offset)
        self.anchors: dict[int, tuple[int, int | None, int]] = {}
        self.changelog_records = 0

    def get(self, partition: int) -> tuple[Engine, list[dict[str, Any]]]:
        """The partition's engine, loading it from the table on first use (after recovery or rebalance)."""
        eng = self.engines.get(partition)
        if eng is not None:
            return eng, []
        prefix = f"{partition}|".encode()
        items = [
            (k[len(prefix):].decode(), json.loads(v))
            for k, v in list(self.table.data.items())
            if k.startswith(prefix) and v is not None
        ]
        eng = self.factory()
        emits = eng.load(items)
        self.engines[partition] = eng
        now = int(time.time() * 1000)
        self.anchors[partition] = (now, eng.watermark, -1)
        if self.max_future_ms is not None and eng.watermark is not None and eng.watermark - now > self.max_future_ms:
            self.ahead_ms[partition] = eng.watermark - now
            log.warning("watermark_ahead_of_wall_clock", engine=self.name, partition=partition,
                        watermark=eng.watermark, ahead_s=round((eng.watermark - now) / 1000),
                        hint="restored event time is in the future (a bad clock upstream): later input counts as "
                             "late until the clock catches up; reset this partition's state to recover")
        return eng, emits

    def touch(self, partition: int, offset: int) -> None:
        eng = self.engines[partition]
        self.anchors[partition] = (int(time.time() * 1000), eng.watermark, offset)

    def flush(self) -> None:
        data = self.table.data
        for p, eng in self.engines.items():
            for key, value in flush_order(eng.take_changes()):
                k = f"{p}|{key}".encode()
                if value is None:
                    data.pop(k, None)
                    v = None
                else:
                    v = _dumps(value)
                    data[k] = v
                self.table.send_changelog(p, k, v, key_serializer="raw", value_serializer="raw")
                self.changelog_records += 1

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self.engines.pop(p, None)
            self.anchors.pop(p, None)
            self.ahead_ms.pop(p, None)

    def idle_candidates(self, now_ms: int, idle_after_ms: int) -> dict[int, tuple[int, int]]:
        """Partitions without input for idle_after_ms: {p: (event time to advance to, last input offset)}.

        The target is the event time at the last input plus the wall time since (event time follows the clock
        while nothing arrives). The caller advances only partitions that have no unread input."""
        out = {}
        for p, (wall, wm, offset) in self.anchors.items():
            idle = now_ms - wall
            if wm is not None and idle >= idle_after_ms:
                out[p] = (wm + idle, offset)
        return out
