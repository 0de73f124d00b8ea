"""Event-time bookkeeping shared by the candle and mention rules.

A bucket `[start, end)` is *closed* (first emitted, revision 0) when the partition's event time W reaches
`end + grace_ms`, and *expired* (state dropped; later input is late data) when W reaches `end + lateness_ms`.
W only moves forward: to the largest event time seen, or by the idle timer.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Timing:
    grace_ms: int = 5_000
    lateness_ms: int = 600_000

    def __post_init__(self) -> None:
        if self.grace_ms < 0:
            raise ValueError("grace_ms must be >= 0")
        if self.lateness_ms < self.grace_ms:
            raise ValueError("lateness_ms must be >= grace_ms (a bucket must close before it expires)")

    def close_at(self, end: int) -> int:
        return end + self.grace_ms

    def expire_at(self, end: int) -> int:
        return end + self.lateness_ms

    def is_late(self, end: int, watermark: int | None) -> bool:
        return watermark is not None and watermark >= end + self.lateness_ms


@dataclass
class Schedule:
    """Two min-heaps of (time, order, key): closes and expiries. `order` breaks ties deterministically."""

    closes: list[tuple[int, tuple, Hashable]] = field(default_factory=list)
    expiries: list[tuple[int, tuple, Hashable]] = field(default_factory=list)

    def add(self, close_at: int, expire_at: int, order: tuple, key: Hashable) -> None:
        heapq.heappush(self.closes, (close_at, order, key))
        heapq.heappush(self.expiries, (expire_at, order, key))

    def add_expiry(self, expire_at: int, order: tuple, key: Hashable) -> None:
        heapq.heappush(self.expiries, (expire_at, order, key))

    def pop_close(self, watermark: int) -> Hashable | None:
        if self.closes and self.closes[0][0] <= watermark:
            return heapq.heappop(self.closes)[2]
        return None

    def pop_expiry(self, watermark: int) -> Hashable | None:
        if self.expiries and self.expiries[0][0] <= watermark:
            return heapq.heappop(self.expiries)[2]
        return None
