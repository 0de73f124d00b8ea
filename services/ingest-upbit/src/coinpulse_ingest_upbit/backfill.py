"""Gap backfill over `GET /v1/trades/ticks`: the paging plan and the rate-limit rules, as pure code.

After every (re)connect, each market is paged backwards from its newest trade (cursor = the sequential_id of the
last trade of the previous page) until a page reaches trades older than the market's watermark minus a margin (the
stream is not in trade order, so a margin covers trades that were still in flight). Every trade found goes through
the same deduper as the live stream, so the overlap is dropped and only the gap is produced, marked BACKFILL.

The start-up history (`COINPULSE_INGEST_HISTORY_HOURS`) uses the same plan with a floor: it never pages further
back than that many hours, whether or not the market was seen (`history_plan`).

The runs that page with these plans over the rate-limited client are in rest.py; `reconnect_delay` is the socket
feed's (feed.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackfillPlan:
    """The paging state of one market's backfill."""

    market: str
    watermark_ms: int | None  # latest trade time seen before the gap; None: market never seen
    margin_ms: int = 60_000  # page this far behind the watermark
    initial_ms: int = 300_000  # for a market never seen: how far back from its newest trade
    count: int = 500
    max_pages: int = 200
    cursor: int | None = None
    pages: int = 0
    stop_before_ms: int | None = None
    floor_ms: int | None = None  # never page further back than this trade time (the start-up history's depth)
    done: bool = False
    truncated: bool = False
    fetched: int = 0
    oldest_ms: int | None = field(default=None)

    def __post_init__(self) -> None:
        if self.watermark_ms is not None:
            self.stop_before_ms = self.watermark_ms - self.margin_ms
        if self.floor_ms is not None:
            self.stop_before_ms = max(self.stop_before_ms or self.floor_ms, self.floor_ms)

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"market": self.market, "count": self.count}
        if self.cursor is not None:
            p["cursor"] = self.cursor
        return p

    def absorb(self, trades: list[dict[str, Any]]) -> None:
        """Take one page of parsed trades (newest first, as returned) and advance the plan."""
        self.pages += 1
        self.fetched += len(trades)
        if not trades:
            self.done = True
            return
        if self.stop_before_ms is None:  # market never seen: go back `initial_ms` from its newest trade
            newest = max(t["trade_timestamp"] for t in trades)
            self.stop_before_ms = newest - self.initial_ms
        oldest = min(t["trade_timestamp"] for t in trades)
        self.oldest_ms = oldest if self.oldest_ms is None else min(self.oldest_ms, oldest)
        self.cursor = trades[-1]["sequential_id"]
        if oldest < self.stop_before_ms or len(trades) < self.count:
            self.done = True
        elif self.pages >= self.max_pages:
            self.done = True
            self.truncated = True


def history_plan(market: str, watermark_ms: int | None, now_ms: int, hours: float, margin_ms: int = 60_000,
                 max_pages: int = 1000) -> BackfillPlan:
    """The start-up history of one market: back `hours` from now, or only back to its watermark minus the margin
    when the trade topic already has it (a restart pages its downtime, never the whole history again)."""
    return BackfillPlan(market, watermark_ms, margin_ms=margin_ms, max_pages=max_pages,
                        floor_ms=now_ms - int(hours * 3_600_000))


@dataclass(frozen=True)
class RemainingReq:
    group: str
    min: int | None
    sec: int | None


def parse_remaining_req(header: str | None) -> RemainingReq | None:
    """`Remaining-Req: group=trade; min=1799; sec=9` → RemainingReq; None if absent or unreadable."""
    if not header:
        return None
    parts: dict[str, str] = {}
    for piece in header.split(";"):
        k, sep, v = piece.strip().partition("=")
        if sep:
            parts[k.strip()] = v.strip()

    def _int(v: str | None) -> int | None:
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    if "group" not in parts and "sec" not in parts:
        return None
    return RemainingReq(parts.get("group", ""), _int(parts.get("min")), _int(parts.get("sec")))


def delay_before_next(status: int, remaining: RemainingReq | None, attempt: int, retry_after: float | None = None,
                      rng: random.Random | None = None) -> float:
    """Seconds to wait before the next request of the same group.

    - 429: back off exponentially (0.6 s, 1.2 s, 2.4 s, … ≤ 10 s) with jitter; continuing after 429 earns a 418 ban.
    - 418: banned; wait Retry-After if given, else 30 s growing with repeats (≤ 300 s).
    - otherwise: if `sec` is 0 the group is exhausted for this second → wait for the next second; else no wait.
    """
    r = rng or random
    if status == 418:
        base = retry_after if retry_after is not None else min(300.0, 30.0 * (2 ** max(0, attempt - 1)))
        return base
    if status == 429:
        if retry_after is not None:
            return retry_after
        return min(10.0, 0.6 * (2 ** max(0, attempt - 1))) * (1 + 0.25 * r.random())
    if remaining is not None and remaining.sec is not None and remaining.sec <= 0:
        return 1.0
    return 0.0


def reconnect_delay(attempt: int, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter for WebSocket reconnects (attempt 1, 2, …), never below 0.2 s so the
    ~5 new connections/s limit holds even when the connection drops at once."""
    r = rng or random
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return max(0.2, r.uniform(ceiling / 2, ceiling))
