"""Candle rules: 1-minute buckets from unique trades, 5-minute and 1-hour rollups from 1-minute candles.

A 1-minute candle for market M and minute T (ARCHITECTURE.md "A 1-minute candle"): the unique trades of M
(identity (market, sequential_id)) with trade time in [T, T+60 s), ordered by (trade_timestamp, sequential_id);
open/close = first/last price, high/low = max/min price, volume = Σ volume, quote_volume = Σ price × volume,
vwap = quote_volume / volume, trade_count, buy_volume (BID) and sell_volume (ASK). No trades → no candle.

A rollup (5m, 1h) is the same candle computed from the 1-minute candles inside it: open of the first minute, close
of the last, max/min, sums, first/last trade time. It is updated whenever one of its 1-minute candles is emitted
(first time or revised).

Everything here is plain Python without Kafka. `CandleEngine` (engine.py) owns the event-time rules.
"""

from __future__ import annotations

from typing import Any

from coinpulse_candle_agent.trades import Trade

MINUTE_MS = 60_000
INTERVALS_MS: dict[str, int] = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
ROLLUPS: tuple[str, ...] = ("5m", "1h")


def bucket_start(ts_ms: int, interval_ms: int) -> int:
    return ts_ms - ts_ms % interval_ms


def candle_record(market: str, interval: str, start: int, s: tuple, revision: int) -> dict[str, Any]:
    """The Avro value (minus emitted_at) from a summary tuple (see `Summary`)."""
    o, h, lo, c, v, q, n, b, sl, ft, lt = s
    return {
        "market": market,
        "interval": interval,
        "bucket_start": start,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": v,
        "quote_volume": q,
        "vwap": q / v,
        "trade_count": n,
        "buy_volume": b,
        "sell_volume": sl,
        "first_trade_at": ft,
        "last_trade_at": lt,
        "revision": revision,
    }


# Summary = (open, high, low, close, volume, quote_volume, count, buy_volume, sell_volume, first_ts, last_ts)


class MinuteBucket:
    """Accumulator of one market-minute: running OHLCV plus the set of sequential_ids already counted."""

    __slots__ = (
        "market", "start", "open", "high", "low", "close", "volume", "quote", "count", "buy", "sell",
        "first", "last", "revision", "seqs",
    )

    def __init__(self, market: str, start: int):
        self.market = market
        self.start = start
        self.open = self.high = self.low = self.close = 0.0
        self.volume = self.quote = self.buy = self.sell = 0.0
        self.count = 0
        self.first: tuple[int, int] = (0, 0)  # (ts, seq) of the first trade
        self.last: tuple[int, int] = (0, 0)
        self.revision = -1  # -1: never emitted
        self.seqs: set[int] = set()

    def add(self, t: Trade) -> bool:
        """Count the trade; False if (market, sequential_id) was already counted."""
        if t.seq in self.seqs:
            return False
        self.seqs.add(t.seq)
        key = (t.ts, t.seq)
        p = t.price
        if self.count == 0:
            self.open = self.high = self.low = self.close = p
            self.first = self.last = key
        else:
            if p > self.high:
                self.high = p
            if p < self.low:
                self.low = p
            if key < self.first:
                self.first = key
                self.open = p
            if key > self.last:
                self.last = key
                self.close = p
        self.count += 1
        self.volume += t.volume
        self.quote += p * t.volume
        if t.bid:
            self.buy += t.volume
        else:
            self.sell += t.volume
        return True

    def summary(self) -> tuple:
        return (self.open, self.high, self.low, self.close, self.volume, self.quote, self.count,
                self.buy, self.sell, self.first[0], self.last[0])

    def record(self) -> dict[str, Any]:
        return candle_record(self.market, "1m", self.start, self.summary(), self.revision)

    def to_state(self) -> dict[str, Any]:
        return {
            "m": self.market, "s": self.start, "r": self.revision,
            "p": [self.open, self.high, self.low, self.close],
            "v": [self.volume, self.quote, self.buy, self.sell], "n": self.count,
            "f": list(self.first), "l": list(self.last), "q": sorted(self.seqs),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> MinuteBucket:
        b = cls(d["m"], d["s"])
        b.revision = d["r"]
        b.open, b.high, b.low, b.close = d["p"]
        b.volume, b.quote, b.buy, b.sell = d["v"]
        b.count = d["n"]
        b.first = tuple(d["f"])
        b.last = tuple(d["l"])
        b.seqs = set(d["q"])
        return b


def rollup_summary(parts: dict[int, tuple]) -> tuple:
    """Combine 1-minute summaries (keyed by minute start) into one candle summary."""
    minutes = sorted(parts)
    first, last = parts[minutes[0]], parts[minutes[-1]]
    high = max(parts[m][1] for m in minutes)
    low = min(parts[m][2] for m in minutes)
    v = q = b = s = 0.0
    n = 0
    for m in minutes:
        p = parts[m]
        v += p[4]
        q += p[5]
        n += p[6]
        b += p[7]
        s += p[8]
    return (first[0], high, low, last[3], v, q, n, b, s, first[9], last[10])


class RollupBucket:
    """A 5m or 1h candle: the latest emitted summary of each of its 1-minute candles (and that candle's revision)."""

    __slots__ = ("market", "interval", "start", "parts", "applied", "revision")

    def __init__(self, market: str, interval: str, start: int):
        self.market = market
        self.interval = interval
        self.start = start
        self.parts: dict[int, tuple] = {}
        self.applied: dict[int, int] = {}  # minute start -> revision of the 1-minute candle in `parts`
        self.revision = -1

    def record(self) -> dict[str, Any]:
        return candle_record(self.market, self.interval, self.start, rollup_summary(self.parts), self.revision)

    def to_state(self) -> dict[str, Any]:
        return {"m": self.market, "i": self.interval, "s": self.start, "r": self.revision,
                "parts": [[k, list(v), self.applied.get(k, -1)] for k, v in sorted(self.parts.items())]}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RollupBucket:
        r = cls(d["m"], d["i"], d["s"])
        r.revision = d["r"]
        r.parts = {p[0]: tuple(p[1]) for p in d["parts"]}
        r.applied = {p[0]: p[2] if len(p) > 2 else -1 for p in d["parts"]}  # state written before `applied`
        return r
