"""The simulator's core: the trade history, the latest message per (type, market), and the connected clients.

Publishing an event records it (trades into the per-market history that `/v1/trades/ticks` pages through) and offers
it to every subscribed connection. Each connection applies its own fault knobs (duplicates, reordering within a
window, malformed frames) before its sender task writes the frames.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from coinpulse_sim_upbit.fields import to_simple

MALFORMED = (
    b'{"type":"trade","code":"KRW-BTC","trade_price":',  # truncated JSON
    b'{"ty":"candle.1s","cd":"KRW-BTC","op":1}',  # a type the ingest does not subscribe
    b'{"type":"trade","code":"KRW-BTC","trade_price":"abc","sequential_id":1,"ask_bid":"BID","trade_timestamp":1}',
    b"\xff\xfe not utf-8",
    b"[]",
)


class Event:
    """One published frame; its bytes are encoded once per format and shared by every connection."""

    __slots__ = ("kind", "market", "msg", "_enc")

    def __init__(self, kind: str, market: str, msg: dict[str, Any]):
        self.kind = kind
        self.market = market
        self.msg = msg
        self._enc: dict[str, bytes] = {}

    def encode(self, fmt: str) -> bytes:
        b = self._enc.get(fmt)
        if b is None:
            b = self._enc[fmt] = orjson.dumps(to_simple(self.msg) if fmt == "SIMPLE" else self.msg)
        return b

    def snapshot(self, fmt: str) -> bytes:
        m = dict(self.msg, stream_type="SNAPSHOT")
        return orjson.dumps(to_simple(m) if fmt == "SIMPLE" else m)


@dataclass
class Faults:
    disconnect_every_s: float = 0.0
    disconnect_every_frames: int = 0  # close each connection after it was sent this many frames (machine-speed free)
    duplicate_rate: float = 0.0
    reorder_window: int = 0
    malformed_rate: float = 0.0
    rest_429_rate: float = 0.0
    min_disconnects: int = 0  # the feed does not end (duration, limit, recording's end) before this many disconnects


@dataclass
class Stats:
    frames_published: int = 0
    trades: int = 0
    frames_sent: int = 0
    duplicates_sent: int = 0
    malformed_sent: int = 0
    connections: int = 0
    disconnects_forced: int = 0
    slow_client_drops: int = 0
    rest_requests: int = 0
    rest_429: int = 0
    rest_418: int = 0
    connections_over_limit: int = 0
    done: bool = False  # the feed has ended (generator duration reached or recording finished)


class Conn:
    """One subscribed WebSocket client."""

    def __init__(self, no: int, subs: dict[str, set[str]], fmt: str, faults: Faults, seed: int, stats: Stats,
                 max_queue: int = 2_000_000):
        self.no = no
        self.subs = subs
        self.fmt = fmt
        self.faults = faults
        self.rng = random.Random(seed * 1_000_003 + no)
        self.stats = stats
        self.queue: deque[bytes] = deque()
        self.window: list[bytes] = []
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.closed = False
        self.sent = 0
        self.too_slow = False
        self.max_queue = max_queue

    def wants(self, ev: Event) -> bool:
        codes = self.subs.get(ev.kind)
        return codes is not None and ev.market in codes

    def push(self, data: bytes) -> None:
        f, r = self.faults, self.rng
        if f.malformed_rate and r.random() < f.malformed_rate:
            self._enqueue(r.choice(MALFORMED))
            self.stats.malformed_sent += 1
        copies = 2 if f.duplicate_rate and r.random() < f.duplicate_rate else 1
        if copies == 2:
            self.stats.duplicates_sent += 1
        for _ in range(copies):
            if f.reorder_window > 1:
                self.window.append(data)
                if len(self.window) >= f.reorder_window:
                    self.flush_window()
                else:  # wake the sender: it flushes a window no later frame fills (the feed's last frames)
                    self.wake.set()
            else:
                self._enqueue(data)

    def flush_window(self) -> None:
        if self.window:
            w, self.window = self.window, []
            self.rng.shuffle(w)
            for d in w:
                self._enqueue(d)

    def _enqueue(self, data: bytes) -> None:
        if self.closed:
            return
        self.queue.append(data)
        self.wake.set()
        if len(self.queue) > 10_000:
            self.drained.clear()
            if len(self.queue) > self.max_queue:  # a client this far behind is cut off, as a real server would
                self.too_slow = True
                self.closed = True


@dataclass
class Hub:
    faults: Faults = field(default_factory=Faults)
    seed: int = 1
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.sid_index: dict[str, dict[int, int]] = {}
        self.sids: dict[str, list[int]] = {}  # published ids per market, in publish order
        self.latest: dict[tuple[str, str], Event] = {}
        self.tickers: dict[str, dict[str, Any]] = {}
        self.conns: set[Conn] = set()
        self.markets: list[str] = []
        self.finish_requested = False  # POST /sim/finish: end the feed at the next frame
        # scenario mode: (market, before sequential_id or None, count) -> older trade frames, newest first: the
        # trades before the live feed started, which `/v1/trades/ticks` pages into after the published ones
        self.past: Callable[[str, int | None, int], list[dict[str, Any]]] | None = None

    def publish(self, kind: str, market: str, msg: dict[str, Any]) -> Event:
        ev = Event(kind, market, msg)
        self.stats.frames_published += 1
        if kind == "trade":
            sid = msg["sequential_id"]
            idx = self.sid_index.setdefault(market, {})
            if sid not in idx:
                hist = self.history.setdefault(market, [])
                idx[sid] = len(hist)
                hist.append(msg)
                self.sids.setdefault(market, []).append(sid)
                self.stats.trades += 1
        elif kind == "ticker":
            self.tickers[market] = msg
        self.latest[(kind, market)] = ev
        for c in self.conns:
            if c.wants(ev):
                c.push(ev.encode(c.fmt))
        return ev

    async def backpressure(self) -> None:
        """At full speed, wait while any client is far behind (at real-time speed, slow clients get dropped)."""
        for c in list(self.conns):
            if not c.drained.is_set() and not c.closed:
                await c.drained.wait()

    def trades_page(self, market: str, count: int, cursor: int | None) -> list[dict[str, Any]] | None:
        """`/v1/trades/ticks`: newest first, `count` trades from just before `cursor` (a sequential_id).

        With a past (scenario mode), a page that reaches the oldest published trade goes on into the past, and a
        cursor that is not a published trade pages from the trades older than it (ids rise with time there).
        """
        hist = self.history.get(market)
        if self.past is None:
            if hist is None:
                return None
            end = len(hist)
            if cursor is not None:
                end = self.sid_index[market].get(cursor, end)
            start = max(0, end - count)
            return [_rest_trade(t) for t in reversed(hist[start:end])]
        if market not in self.markets:
            return None
        hist = hist or []
        if cursor is None:
            end = len(hist)
        else:
            end = self.sid_index.get(market, {}).get(cursor)
            if end is None:
                end = bisect.bisect_left(self.sids.get(market, []), cursor)
        start = max(0, end - count)
        page = [_rest_trade(t) for t in reversed(hist[start:end])]
        if len(page) < count and start == 0:
            before = hist[0]["sequential_id"] if end > 0 else cursor
            page.extend(_rest_trade(t) for t in self.past(market, before, count - len(page)))
        return page

    def all_trades(self, market: str | None = None) -> list[dict[str, Any]]:
        out = []
        for m, hist in self.history.items():
            if market and m != market:
                continue
            out.extend({"market": m, "sequential_id": t["sequential_id"], "trade_timestamp": t["trade_timestamp"],
                        "price": t["trade_price"], "volume": t["trade_volume"], "ask_bid": t["ask_bid"]}
                       for t in hist)
        return out


def _rest_trade(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "market": t["code"], "trade_date_utc": t.get("trade_date"), "trade_time_utc": t.get("trade_time"),
        "timestamp": t["trade_timestamp"], "trade_price": t["trade_price"], "trade_volume": t["trade_volume"],
        "prev_closing_price": t.get("prev_closing_price"), "change_price": t.get("change_price"),
        "ask_bid": t["ask_bid"], "sequential_id": t["sequential_id"],
    }
