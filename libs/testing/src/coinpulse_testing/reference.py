"""Brute-force reference for the candle rules: plain Python over the unique trades, no incremental state.

Used by the property tests, the integration test and the benchmark. Given the input in arrival order per
partition, it decides which trades were too late (event time W before the trade >= bucket end + lateness),
keeps the first accepted copy of each (market, sequential_id), groups by bucket, sorts each bucket by
(trade_timestamp, sequential_id) and computes the candle from scratch. 5m and 1h candles are computed directly
from the trades too (not from 1m candles), so the rollup path is checked independently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from coinpulse_candle_agent.candles import INTERVALS_MS
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.trades import Trade

Key = tuple[str, str, int]  # (interval, market, bucket_start)


def accepted_trades(events: Iterable[tuple[str, int, Any]], timing: Timing) -> tuple[list[Trade], list[Trade], dict[int, int]]:
    """events: ("trade", partition, Trade) or ("tick", partition, to_ms) in arrival order.

    Returns (unique accepted trades, late trades, final event time per partition)."""
    wm: dict[int, int] = {}
    seen: set[tuple[str, int]] = set()
    unique: list[Trade] = []
    late: list[Trade] = []
    for kind, partition, item in events:
        w = wm.get(partition)
        if kind == "tick":
            if w is None or item > w:
                wm[partition] = item
            continue
        t: Trade = item
        end = t.ts - t.ts % 60_000 + 60_000
        if w is not None and w >= end + timing.lateness_ms:
            late.append(t)
            continue
        if (t.market, t.seq) not in seen:
            seen.add((t.market, t.seq))
            unique.append(t)
        if w is None or t.ts > w:
            wm[partition] = t.ts
    return unique, late, wm


def candle_of(market: str, interval: str, start: int, trades: list[Trade]) -> dict[str, Any]:
    ts = sorted(trades, key=lambda t: (t.ts, t.seq))
    volume = sum(t.volume for t in ts)
    quote = sum(t.price * t.volume for t in ts)
    return {
        "market": market,
        "interval": interval,
        "bucket_start": start,
        "open": ts[0].price,
        "high": max(t.price for t in ts),
        "low": min(t.price for t in ts),
        "close": ts[-1].price,
        "volume": volume,
        "quote_volume": quote,
        "vwap": quote / volume,
        "trade_count": len(ts),
        "buy_volume": sum(t.volume for t in ts if t.bid),
        "sell_volume": sum(t.volume for t in ts if not t.bid),
        "first_trade_at": ts[0].ts,
        "last_trade_at": ts[-1].ts,
    }


def sim_trades(history: Iterable[dict[str, Any]]) -> list[Trade]:
    """The unique trades of a simulator's history (`GET /sim/trades`: the first of each (market, sequential_id))."""
    unique: dict[tuple[str, int], dict[str, Any]] = {}
    for t in history:
        unique.setdefault((t["market"], t["sequential_id"]), t)
    return [Trade(t["market"], t["sequential_id"], t["trade_timestamp"], t["price"], t["volume"], t["ask_bid"] == "BID")
            for t in unique.values()]


def reference_candles(trades: Iterable[Trade], intervals: Iterable[str] = ("1m", "5m", "1h")) -> dict[Key, dict[str, Any]]:
    """Every candle of the given (unique) trades."""
    groups: dict[Key, list[Trade]] = defaultdict(list)
    trades = list(trades)
    for interval in intervals:
        ms = INTERVALS_MS[interval]
        for t in trades:
            groups[(interval, t.market, t.ts - t.ts % ms)].append(t)
    return {k: candle_of(k[1], k[0], k[2], v) for k, v in groups.items()}


def closed_by(key: Key, watermark: int | None, timing: Timing) -> bool:
    """Whether the final event time has passed the bucket's close time (so it must have been emitted)."""
    interval, _, start = key
    return watermark is not None and watermark >= start + INTERVALS_MS[interval] + timing.grace_ms


FLOAT_FIELDS = ("volume", "quote_volume", "vwap", "buy_volume", "sell_volume")
EXACT_FIELDS = ("market", "interval", "bucket_start", "open", "high", "low", "close", "trade_count",
                "first_trade_at", "last_trade_at")


def candle_diff(got: dict[str, Any], want: dict[str, Any], rel: float = 1e-9) -> list[str]:
    """Differences between an emitted candle and the reference: exact fields exactly, volumes within `rel`."""
    out = [f"{f}: {got.get(f)!r} != {want[f]!r}" for f in EXACT_FIELDS if got.get(f) != want[f]]
    for f in FLOAT_FIELDS:
        g, w = got.get(f), want[f]
        if g is None or abs(g - w) > rel * max(abs(w), 1e-300):
            out.append(f"{f}: {g!r} !~ {w!r}")
    return out


def reference_mentions(events: Iterable[tuple[str, int, Any]],
                       timing: Timing) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[int, int]]:
    """Mention buckets from ("hits", partition, DocHits) / ("tick", partition, ms) events, from scratch.

    A document's contribution is its last accepted version, except that a body-less version never replaces a
    version with a body. Returns ({(market, minute): record minus revision}, final event time per partition)."""
    wm: dict[int, int] = {}
    docs: dict[tuple[str, int], dict[str, tuple[int, int, int, bool]]] = defaultdict(dict)
    for kind, partition, item in events:
        w = wm.get(partition)
        if kind == "tick":
            wm[partition] = item if w is None else max(w, item)
            continue
        start = item.ts - item.ts % 60_000
        if w is not None and w >= start + 60_000 + timing.lateness_ms:
            continue
        old = docs[(item.market, start)].get(item.doc)
        if not (old is not None and old[3] and not item.has_body):
            docs[(item.market, start)][item.doc] = (item.mentions, item.positive, item.negative, item.has_body)
        wm[partition] = item.ts if w is None else max(w, item.ts)
    out = {}
    for (market, start), d in docs.items():
        pos = sum(x[1] for x in d.values())
        neg = sum(x[2] for x in d.values())
        posts = sum(1 for k in d if k.startswith("p:"))
        out[(market, start)] = {
            "market": market, "bucket_start": start, "mentions": sum(x[0] for x in d.values()),
            "posts": posts, "comments": len(d) - posts, "positive": pos, "negative": neg,
            "sentiment": (pos - neg) / max(1, pos + neg),
        }
    return out, wm
