"""Synthetic trade streams for integration tests and benchmarks (seeded, reproducible).

Trades follow a random walk per market with Upbit-like sequential ids; `arrival_order` adds duplicates and
out-of-order delivery (within the grace, beyond the grace, beyond the lateness) the way reconnects and gap
backfill produce them."""

from __future__ import annotations

import random
from typing import Any

from coinpulse_candle_agent.trades import Trade


def trades(markets: list[str], start_ms: int, duration_ms: int, per_market: int, seed: int = 1) -> list[Trade]:
    rnd = random.Random(seed)
    out = []
    for i, market in enumerate(markets):
        price = 1000.0 * (i + 1)
        times = sorted(start_ms + rnd.randrange(duration_ms) for _ in range(per_market))
        for k, ts in enumerate(times):
            price = max(1.0, round(price * (1 + rnd.gauss(0, 0.001)), 2))
            out.append(Trade(market, ts * 1000 + k, ts, price, round(rnd.uniform(0.0001, 3.0), 8),
                             rnd.random() < 0.5))
    out.sort(key=lambda t: (t.ts, t.market, t.seq))
    return out


def arrival_order(ts: list[Trade], seed: int = 2, dup_rate: float = 0.02, delays: tuple[int, ...] = (),
                  delay_rate: float = 0.0) -> list[Trade]:
    """Delivery order: by trade time plus a random delay for a fraction of trades; some trades twice."""
    rnd = random.Random(seed)
    keyed = []
    for t in ts:
        copies = 2 if rnd.random() < dup_rate else 1
        for _ in range(copies):
            delay = rnd.choice(delays) if delays and rnd.random() < delay_rate else 0
            keyed.append((t.ts + delay, rnd.random(), t))
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in keyed]


def trade_record(t: Trade, received_at: int | None = None) -> dict[str, Any]:
    """The `upbit.trade` Avro value of a trade."""
    return {
        "market": t.market, "sequential_id": t.seq, "trade_timestamp": t.ts, "price": t.price,
        "volume": t.volume, "ask_bid": "BID" if t.bid else "ASK", "prev_closing_price": None, "change": None,
        "change_price": None, "stream_type": "REALTIME", "backfilled": False,
        "received_at": received_at if received_at is not None else t.ts,
    }
