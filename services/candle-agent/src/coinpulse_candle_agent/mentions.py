"""The streaming mention engine: per market per minute, mentions, distinct posts and comments, lexicon sentiment.

The rules themselves live in `coinpulse_mentions` (documents.py: what a document version says, `replaces`,
`mention_record`; the same rules the flows' mention rebuild applies). Input is one `DocHits` per (document,
market): what one version of a post or comment says about one market, with the document's event time
(created_at). A document seen again (re-crawl, view page fetched later) replaces its earlier contribution, except
that a version without a body never replaces one with a body. A version is ordered by its source record's offset
(a document always lives in one partition of its topic), so a replay of older versions after a restart changes
nothing. The minute bucket follows the candle clock (clock.py): emitted with revision 0 when event time passes
end + grace, re-emitted with revision + 1 when a change arrives within the lateness, later input is counted as late.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coinpulse_mentions import DocHits, contribution, mention_record, minute_of, replaces

from coinpulse_candle_agent.candles import MINUTE_MS
from coinpulse_candle_agent.clock import Schedule, Timing

WATERMARK_KEY = "w"
__all__ = ["WATERMARK_KEY", "DocHits", "MentionEngine"]


class MentionEngine:
    """Mention buckets of one partition of the (market-keyed) hits topic."""

    def __init__(self, timing: Timing):
        self.timing = timing
        self.watermark: int | None = None
        # {"docs": {doc: (mentions, positive, negative, has_body, version)}, "r": revision}
        self.buckets: dict[tuple[str, int], dict[str, Any]] = {}
        self.schedule = Schedule()
        self._dirty: set[tuple[str, int]] = set()
        self._final: dict[tuple[str, int], dict[str, Any]] = {}  # buckets changed, then expired, since last flush
        self._wm_dirty = False
        self.accepted = self.unchanged = self.late = 0

    def _record(self, key: tuple[str, int]) -> dict[str, Any]:
        b = self.buckets[key]
        return mention_record(key[0], key[1], b["docs"], b["r"])

    def add(self, h: DocHits) -> tuple[str, list[dict[str, Any]]]:
        start = minute_of(h.ts)
        if self.timing.is_late(start + MINUTE_MS, self.watermark):
            self.late += 1
            return "late", []
        key = (h.market, start)
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = {"docs": {}, "r": -1}
            end = start + MINUTE_MS
            self.schedule.add(self.timing.close_at(end), self.timing.expire_at(end), (h.market, start), key)
        new = contribution(h)
        emits: list[dict[str, Any]] = []
        if not replaces(b["docs"].get(h.doc), new):
            self.unchanged += 1
            status = "unchanged"
        else:
            b["docs"][h.doc] = new
            self._dirty.add(key)
            self.accepted += 1
            status = "ok"
            if b["r"] >= 0:
                b["r"] += 1
                emits.append(self._record(key))
        self.advance_into(h.ts, emits)
        return status, emits

    def advance(self, to_ms: int) -> list[dict[str, Any]]:
        emits: list[dict[str, Any]] = []
        self.advance_into(to_ms, emits)
        return emits

    def advance_into(self, to_ms: int, emits: list[dict[str, Any]]) -> None:
        if self.watermark is None or to_ms > self.watermark:
            self.watermark = to_ms
            self._wm_dirty = True
        w = self.watermark
        while (key := self.schedule.pop_close(w)) is not None:
            b = self.buckets.get(key)  # type: ignore[arg-type]
            if b is not None and b["r"] < 0:
                b["r"] = 0
                self._dirty.add(key)  # type: ignore[arg-type]
                emits.append(self._record(key))  # type: ignore[arg-type]
        while (key := self.schedule.pop_expiry(w)) is not None:
            if (b := self.buckets.pop(key, None)) is not None:  # type: ignore[arg-type]
                if key in self._dirty:
                    self._final[key] = b  # type: ignore[index]
                self._dirty.add(key)  # type: ignore[arg-type]

    def take_changes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Changed buckets, then the watermark, then deletions: every prefix is a state the replay repairs (as
        CandleEngine.take_changes; a bucket changed and expired since the last call has its last state written)."""
        out: list[tuple[str, dict[str, Any] | None]] = []
        deleted: list[tuple[str, dict[str, Any] | None]] = []
        for key in self._dirty:
            b = self.buckets.get(key) or self._final.get(key)
            if b is not None:
                out.append((f"{key[0]}|{key[1]}", {"r": b["r"], "docs": b["docs"]}))
            if key not in self.buckets:
                deleted.append((f"{key[0]}|{key[1]}", None))
        self._dirty.clear()
        self._final.clear()
        if self._wm_dirty:
            out.append((WATERMARK_KEY, {"w": self.watermark}))
            self._wm_dirty = False
        return out + deleted

    def load(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        for k, v in items:
            if k == WATERMARK_KEY:
                self.watermark = v["w"]
                continue
            market, start_s = k.rsplit("|", 1)
            key = (market, int(start_s))
            docs = {d: tuple(x) if len(x) > 4 else (*x, -1) for d, x in v["docs"].items()}  # -1: before versions
            self.buckets[key] = {"r": v["r"], "docs": docs}
            end = key[1] + MINUTE_MS
            if v["r"] >= 0:
                self.schedule.add_expiry(self.timing.expire_at(end), key, key)
            else:
                self.schedule.add(self.timing.close_at(end), self.timing.expire_at(end), key, key)
        emits: list[dict[str, Any]] = []
        if self.watermark is not None:
            self.advance_into(self.watermark, emits)
        return emits
