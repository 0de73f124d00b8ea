"""A generated Upbit market: a random walk per market on Upbit's KRW tick grid, Poisson trade arrivals, log-normal
trade sizes, a ticker after trades and periodic 15-unit order books. Seeded: the same seed gives the same stream.

Events come out in event-time order as `(t_ms, DEFAULT-named message)`.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from coinpulse_simworld.ticks import krw_tick  # the price grid, once (the world and this generator)

# code, Korean name, English name, start price (KRW), trades per second
DEFAULT_MARKETS: list[tuple[str, str, str, float, float]] = [
    ("KRW-BTC", "비트코인", "Bitcoin", 140_000_000, 4.0),
    ("KRW-ETH", "이더리움", "Ethereum", 5_200_000, 3.0),
    ("KRW-XRP", "리플", "XRP", 3_400, 3.0),
    ("KRW-SOL", "솔라나", "Solana", 240_000, 1.5),
    ("KRW-DOGE", "도지코인", "Dogecoin", 330, 1.5),
    ("KRW-ADA", "에이다", "Cardano", 1_050, 1.0),
    ("KRW-SUI", "수이", "Sui", 5_300, 1.0),
    ("KRW-TRX", "트론", "TRON", 380, 0.6),
    ("KRW-LINK", "체인링크", "Chainlink", 22_000, 0.6),
    ("KRW-AVAX", "아발란체", "Avalanche", 31_000, 0.5),
    ("KRW-HBAR", "헤데라", "Hedera", 270, 0.5),
    ("KRW-ETC", "이더리움클래식", "Ethereum Classic", 26_000, 0.4),
    ("KRW-BCH", "비트코인캐시", "Bitcoin Cash", 560_000, 0.3),
    ("KRW-DOT", "폴카닷", "Polkadot", 5_800, 0.3),
    ("KRW-OM", "만트라", "MANTRA", 560, 0.3),
]
NAMES = {m: (k, e) for m, k, e, _, _ in DEFAULT_MARKETS}


def on_grid(price: float) -> float:
    t = krw_tick(price)
    return round(round(price / t) * t, 4)


@dataclass
class _Market:
    code: str
    price: float
    rate: float  # trades/s
    prev_close: float
    open: float
    high: float
    low: float
    acc_vol: float = 0.0
    acc_val: float = 0.0
    acc_ask: float = 0.0
    acc_bid: float = 0.0
    sid: int = 0
    last_ticker_ms: int = -10**15
    last_side: str = "BID"


def _date_time(ms: int) -> tuple[str, str]:
    g = time.gmtime(ms / 1000)
    return time.strftime("%Y-%m-%d", g), time.strftime("%H:%M:%S", g)


class MarketGenerator:
    def __init__(self, markets: list[str] | None = None, seed: int = 1, start_ms: int | None = None,
                 ticker_interval_s: float = 1.0, orderbook_interval_s: float = 5.0, depth: int = 15,
                 rate_scale: float = 1.0):
        self.rng = random.Random(seed)
        table = {m[0]: m for m in DEFAULT_MARKETS}
        codes = markets or [m[0] for m in DEFAULT_MARKETS]
        self.start_ms = start_ms if start_ms is not None else int(time.time() * 1000)
        self.ticker_ms = int(ticker_interval_s * 1000)
        self.orderbook_ms = int(orderbook_interval_s * 1000)
        self.depth = depth
        self.markets: dict[str, _Market] = {}
        for i, code in enumerate(codes):
            _, _, _, price, rate = table.get(code, (code, code, code, 1_000.0 * (1 + i), 0.3))
            p = on_grid(price)
            # every market's sids start from the same base: sids collide across markets, as on Upbit
            self.markets[code] = _Market(code, p, rate * rate_scale, p, p, p, p,
                                         sid=self.start_ms * 1000)

    def _trade(self, m: _Market, t: int) -> dict[str, Any]:
        r = self.rng
        tick = krw_tick(m.price)
        if r.random() < 0.35:
            m.price = on_grid(max(tick, m.price + tick * r.choice((-3, -2, -1, -1, 1, 1, 2, 3))))
        side = m.last_side if r.random() < 0.6 else ("ASK" if m.last_side == "BID" else "BID")
        m.last_side = side
        notional = math.exp(r.gauss(math.log(150_000), 1.4))  # KRW value of one trade
        vol = round(max(notional / m.price, 1e-8), 8)
        m.sid += r.randint(1, 3)
        m.high, m.low = max(m.high, m.price), min(m.low, m.price)
        m.acc_vol += vol
        m.acc_val += vol * m.price
        if side == "ASK":
            m.acc_ask += vol
        else:
            m.acc_bid += vol
        d, tt = _date_time(t)
        chg = m.price - m.prev_close
        return {
            "type": "trade", "code": m.code, "timestamp": t + r.randint(1, 30), "trade_date": d, "trade_time": tt,
            "trade_timestamp": t, "trade_price": m.price, "trade_volume": vol, "ask_bid": side,
            "prev_closing_price": m.prev_close, "change": "RISE" if chg > 0 else "FALL" if chg < 0 else "EVEN",
            "change_price": abs(chg), "sequential_id": m.sid,
            "best_ask_price": m.price + tick, "best_ask_size": round(r.uniform(0.01, 5) * 1e6 / m.price, 8),
            "best_bid_price": m.price, "best_bid_size": round(r.uniform(0.01, 5) * 1e6 / m.price, 8),
            "stream_type": "REALTIME",
        }

    def _ticker(self, m: _Market, t: int, trade: dict[str, Any]) -> dict[str, Any]:
        chg = m.price - m.prev_close
        d, tt = _date_time(t)
        return {
            "type": "ticker", "code": m.code, "opening_price": m.open, "high_price": m.high, "low_price": m.low,
            "trade_price": m.price, "prev_closing_price": m.prev_close,
            "change": "RISE" if chg > 0 else "FALL" if chg < 0 else "EVEN", "change_price": abs(chg),
            "signed_change_price": chg, "change_rate": abs(chg) / m.prev_close, "signed_change_rate": chg / m.prev_close,
            "trade_volume": trade["trade_volume"], "acc_trade_volume": m.acc_vol,
            "acc_trade_volume_24h": m.acc_vol * 24, "acc_trade_price": m.acc_val,
            "acc_trade_price_24h": m.acc_val * 24, "trade_date": d.replace("-", ""), "trade_time": tt.replace(":", ""),
            "trade_timestamp": trade["trade_timestamp"], "ask_bid": trade["ask_bid"],
            "acc_ask_volume": m.acc_ask, "acc_bid_volume": m.acc_bid, "highest_52_week_price": m.high * 1.5,
            "highest_52_week_date": "2025-01-20", "lowest_52_week_price": m.low * 0.5,
            "lowest_52_week_date": "2024-08-05", "market_state": "ACTIVE", "delisting_date": None,
            "timestamp": trade["timestamp"] + 1, "stream_type": "REALTIME",
        }

    def _orderbook(self, m: _Market, t: int) -> dict[str, Any]:
        r = self.rng
        tick = krw_tick(m.price)
        units = []
        for i in range(self.depth):
            units.append({"ask_price": on_grid(m.price + tick * (i + 1)), "bid_price": on_grid(m.price - tick * i),
                          "ask_size": round(r.expovariate(1.0) * 2e6 / m.price, 8),
                          "bid_size": round(r.expovariate(1.0) * 2e6 / m.price, 8)})
        return {
            "type": "orderbook", "code": m.code, "timestamp": t,
            "total_ask_size": round(sum(u["ask_size"] for u in units), 8),
            "total_bid_size": round(sum(u["bid_size"] for u in units), 8),
            "orderbook_units": units, "stream_type": "REALTIME", "level": 0,
        }

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Endless stream of (event time ms, DEFAULT message) in time order."""
        r = self.rng
        heap: list[tuple[float, int, str, str]] = []
        n = 0
        for code, m in self.markets.items():
            heap.append((self.start_ms + r.expovariate(m.rate) * 1000, n, code, "trade"))
            n += 1
            if self.orderbook_ms > 0:
                heap.append((self.start_ms + r.uniform(0, self.orderbook_ms), n, code, "orderbook"))
                n += 1
        heapq.heapify(heap)
        while heap:
            tf, _, code, kind = heapq.heappop(heap)
            t = int(tf)
            m = self.markets[code]
            if kind == "trade":
                tr = self._trade(m, t)
                yield t, tr
                if t - m.last_ticker_ms >= self.ticker_ms:
                    m.last_ticker_ms = t
                    yield t, self._ticker(m, t, tr)
                nxt = tf + r.expovariate(m.rate) * 1000
            else:
                yield t, self._orderbook(m, t)
                nxt = tf + self.orderbook_ms
            n += 1
            heapq.heappush(heap, (nxt, n, code, kind))
