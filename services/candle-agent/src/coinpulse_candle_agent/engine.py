"""The candle state of one input partition: buckets, the partition's event time, emission and revision rules.

- A trade goes to its 1-minute bucket unless that bucket has expired (event time W >= end + lateness_ms): then it
  is late (returned as such; the agent sends it to `candle.late`). A trade whose (market, sequential_id) the bucket
  already counted is a duplicate and changes nothing.
- W = max(trade time seen, timer). A bucket is emitted with revision 0 when W >= end + grace_ms; a trade accepted
  into an already emitted bucket re-emits it at once with revision + 1 (one revision per late trade: the revision
  sequence depends only on the input order, so a replay reproduces it).
- Each emitted 1-minute candle (first or revised) updates its 5m and 1h rollups, which follow the same rules.
- Buckets are dropped when they expire.

`take_changes()` hands the app the state records to persist (bucket values, then the watermark, `None` = delete);
`load()` rebuilds an engine from them after a restart or rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from coinpulse_candle_agent.candles import (
    INTERVALS_MS,
    MINUTE_MS,
    ROLLUPS,
    MinuteBucket,
    RollupBucket,
    bucket_start,
)
from coinpulse_candle_agent.clock import Schedule, Timing
from coinpulse_candle_agent.trades import Trade

BucketKey = tuple[str, str, int]  # (interval, market, start)
WATERMARK_KEY = "w"


class Outcome(NamedTuple):
    status: str  # "ok" | "dup" | "late"
    emits: list[dict[str, Any]]


def state_key(key: BucketKey) -> str:
    return f"{key[0]}|{key[1]}|{key[2]}"


class CandleEngine:
    def __init__(self, timing: Timing | None = None):
        self.timing = timing or Timing()
        self.watermark: int | None = None
        self.buckets: dict[BucketKey, MinuteBucket | RollupBucket] = {}
        self.schedule = Schedule()
        self._dirty: set[BucketKey] = set()
        self._final: dict[BucketKey, dict[str, Any]] = {}  # buckets changed, then expired, since the last flush
        self._wm_dirty = False
        self.accepted = self.duplicates = self.late = 0

    # -- input -----------------------------------------------------------------------------------------------
    def add(self, t: Trade) -> Outcome:
        start = t.ts - t.ts % MINUTE_MS
        if self.timing.is_late(start + MINUTE_MS, self.watermark):
            self.late += 1
            return Outcome("late", [])
        key = ("1m", t.market, start)
        b = self.buckets.get(key)
        if b is None:
            b = self._create(key)
        emits: list[dict[str, Any]] = []
        if not b.add(t):  # type: ignore[union-attr]
            # a duplicate still moves event time: on a replay after a crash, the trade's first copy may be in the
            # restored state while the event time it set is not (uninterrupted, this never moves anything)
            self.duplicates += 1
            self._observe(t.ts, emits)
            return Outcome("dup", emits)
        self.accepted += 1
        self._dirty.add(key)
        if b.revision >= 0:
            b.revision += 1
            emits.append(b.record())
            self._feed_rollups(b, emits)  # type: ignore[arg-type]
        self._observe(t.ts, emits)
        return Outcome("ok", emits)

    def _observe(self, ts: int, emits: list[dict[str, Any]]) -> None:
        """A trade time was seen: event time moves to it if later, and whatever that closes or expires is settled."""
        if self.watermark is None or ts > self.watermark:
            self.watermark = ts
            self._wm_dirty = True
        self._drain(emits)

    def advance(self, to_ms: int) -> list[dict[str, Any]]:
        """Move event time forward (idle timer); emits whatever closes."""
        emits: list[dict[str, Any]] = []
        if self.watermark is None or to_ms > self.watermark:
            self.watermark = to_ms
            self._wm_dirty = True
            self._drain(emits)
        return emits

    # -- rules -----------------------------------------------------------------------------------------------
    def _create(self, key: BucketKey) -> MinuteBucket | RollupBucket:
        interval, market, start = key
        b: MinuteBucket | RollupBucket
        b = MinuteBucket(market, start) if interval == "1m" else RollupBucket(market, interval, start)
        self.buckets[key] = b
        self._schedule(key)
        return b

    def _schedule(self, key: BucketKey, closed: bool = False) -> None:
        interval, market, start = key
        end = start + INTERVALS_MS[interval]
        order = (INTERVALS_MS[interval], market, start)
        if closed:
            self.schedule.add_expiry(self.timing.expire_at(end), order, key)
        else:
            self.schedule.add(self.timing.close_at(end), self.timing.expire_at(end), order, key)

    def _feed_rollups(self, m: MinuteBucket, emits: list[dict[str, Any]]) -> None:
        summary = m.summary()
        for interval in ROLLUPS:
            key = (interval, m.market, bucket_start(m.start, INTERVALS_MS[interval]))
            r = self.buckets.get(key) or self._create(key)
            if r.applied.get(m.start, -1) >= m.revision:  # type: ignore[union-attr]
                continue  # a replay re-emitting a minute revision the restored rollup already holds
            r.parts[m.start] = summary  # type: ignore[union-attr]
            r.applied[m.start] = m.revision  # type: ignore[union-attr]
            self._dirty.add(key)
            if r.revision >= 0:
                r.revision += 1
                emits.append(r.record())

    def _drain(self, emits: list[dict[str, Any]]) -> None:
        w = self.watermark
        if w is None:
            return
        pop_close = self.schedule.pop_close
        while (key := pop_close(w)) is not None:
            b = self.buckets.get(key)  # type: ignore[arg-type]
            if b is None or b.revision >= 0:
                continue
            b.revision = 0
            self._dirty.add(key)  # type: ignore[arg-type]
            emits.append(b.record())
            if isinstance(b, MinuteBucket):
                self._feed_rollups(b, emits)
        while (key := self.schedule.pop_expiry(w)) is not None:
            if (b := self.buckets.pop(key, None)) is not None:  # type: ignore[arg-type]
                if key in self._dirty:  # changed since the last flush: that change is written before the deletion
                    self._final[key] = b.to_state()  # type: ignore[index]
                self._dirty.add(key)  # type: ignore[arg-type]

    # -- persistence -----------------------------------------------------------------------------------------
    def take_changes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """State records changed since the last call, in an order whose every prefix a replay repairs (a kill can
        cut the write anywhere): rollups, then 1-minute buckets, then the watermark, then deletions.

        Rollups before minutes: a minute whose new state landed is a duplicate on replay and will not feed its
        rollups again, so they must have landed already; a rollup ahead of its minute ignores the minute's
        replayed revisions it already holds (`RollupBucket.applied`). Deletions after the watermark: the
        watermark that expired a bucket makes its replayed trades late instead of a new bucket. A bucket that
        changed and expired within one flush (closed and expired by one jump of event time) has its last state
        written too: a deleted minute can no longer feed a rollup that did not land."""
        rollups, minutes, deleted = [], [], []
        for key in self._dirty:
            b = self.buckets.get(key)
            state = b.to_state() if b is not None else self._final.get(key)
            if state is not None:
                (minutes if key[0] == "1m" else rollups).append((state_key(key), state))
            if b is None:
                deleted.append((state_key(key), None))
        self._dirty.clear()
        self._final.clear()
        out: list[tuple[str, dict[str, Any] | None]] = rollups + minutes
        if self._wm_dirty:
            out.append((WATERMARK_KEY, {"w": self.watermark}))
            self._wm_dirty = False
        return out + deleted

    def load(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Restore state records; returns whatever the restored watermark already closes."""
        for k, v in items:
            if k == WATERMARK_KEY:
                self.watermark = v["w"]
                continue
            interval, _, _ = k.split("|", 2)
            b: MinuteBucket | RollupBucket
            b = MinuteBucket.from_state(v) if interval == "1m" else RollupBucket.from_state(v)
            key = (interval, b.market, b.start)
            self.buckets[key] = b
            self._schedule(key, closed=b.revision >= 0)
        # anything the restored watermark already closed or expired is settled now
        emits: list[dict[str, Any]] = []
        self._drain(emits)
        return emits

    def open_buckets(self) -> int:
        return len(self.buckets)
