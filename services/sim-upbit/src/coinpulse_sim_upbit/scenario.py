"""Scenario mode (`--scenario`): the market of the shared simulated world (coinpulse_simworld).

The live feed publishes, from the moment it starts, the world's trades of each minute (their 1-minute candles close
at the world's closes, so they carry the world's returns), a ticker after a trade at most once a second per market
and an order book every few seconds. Everything before the feed's start back to `history_hours` is the past:
`/v1/trades/ticks` pages through it (after the trades published live), computed minute by minute from the same world,
so the past and the live feed are one consistent series of trades with Upbit-shaped sequential ids
(trade ms x 1000 + a counter). A restarted simulator serves the same trades again under the same ids.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from coinpulse_simworld import MINUTE_MS, Trade, World, krw_tick, minute_trades, now_ms, on_grid, rng_for

MEAN_NOTIONAL = 150_000 * math.exp(1.4**2 / 2)  # KRW, mean of the log-normal trade value


def _date_time(ms: int) -> tuple[str, str]:
    g = time.gmtime(ms / 1000)
    return time.strftime("%Y-%m-%d", g), time.strftime("%H:%M:%S", g)


def _unit(x: int) -> float:
    """A deterministic number in [0, 1) from an integer (sizes that need no generator state)."""
    return ((x * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFF) / float(1 << 48)


@dataclass
class _State:
    """Running ticker state of one market since the feed started."""

    prev_close: float
    open: float
    high: float
    low: float
    price: float
    day: int
    acc_vol: float = 0.0
    acc_val: float = 0.0
    acc_ask: float = 0.0
    acc_bid: float = 0.0
    last_ticker_ms: int = -(10**15)


class ScenarioMarket:
    def __init__(self, world: World, codes: list[str] | None = None, history_hours: float = 0.0,
                 ticker_interval_s: float = 1.0, orderbook_interval_s: float = 5.0, depth: int = 15,
                 clock: Callable[[], int] = now_ms):
        self.world = world
        self.codes = codes or world.markets
        for c in self.codes:
            world.spec(c)  # an unknown market fails here, with its name
        self.clock = clock
        self.created_ms = clock()
        self.history_start_ms = self.created_ms - int(history_hours * 3_600_000)
        self.start_ms: int | None = None  # the live feed's first instant, once it runs
        self.ticker_ms = int(ticker_interval_s * 1000)
        self.orderbook_ms = int(orderbook_interval_s * 1000)
        self.depth = depth
        self._trades: OrderedDict[tuple[str, int], list[Trade]] = OrderedDict()

    # ---- the world's trades --------------------------------------------------------------------------------
    def trades(self, code: str, minute: int) -> list[Trade]:
        key = (code, minute)
        hit = self._trades.get(key)
        if hit is None:
            hit = self._trades[key] = minute_trades(self.world, code, minute)
            if len(self._trades) > 4096:
                self._trades.popitem(last=False)
        return hit

    def trade_msg(self, code: str, t: Trade) -> dict[str, Any]:
        """A DEFAULT-named trade frame (prev_closing_price: the last close of the previous UTC day)."""
        prev = self.world.day_open(code, t.ts_ms // MINUTE_MS)
        tick = krw_tick(t.price)
        d, tt = _date_time(t.ts_ms)
        chg = t.price - prev
        return {
            "type": "trade", "code": code, "timestamp": t.ts_ms + 1 + t.sid % 29, "trade_date": d, "trade_time": tt,
            "trade_timestamp": t.ts_ms, "trade_price": t.price, "trade_volume": t.volume, "ask_bid": t.side,
            "prev_closing_price": prev, "change": "RISE" if chg > 0 else "FALL" if chg < 0 else "EVEN",
            "change_price": abs(chg), "sequential_id": t.sid,
            "best_ask_price": on_grid(t.price + tick), "best_ask_size": round((0.01 + 5 * _unit(t.sid)) * 1e6 / t.price, 8),
            "best_bid_price": t.price, "best_bid_size": round((0.01 + 5 * _unit(t.sid + 1)) * 1e6 / t.price, 8),
            "stream_type": "REALTIME",
        }

    def acc_trade_price_24h(self, code: str) -> float:
        return self.world.spec(code).trades_per_second * MEAN_NOTIONAL * 86_400

    def initial_tickers(self) -> dict[str, dict[str, Any]]:
        """What `/v1/ticker/all` answers before the feed's first ticker: the last close, the expected 24 h value."""
        m = self.created_ms // MINUTE_MS - 1
        return {c: {"trade_price": self.world.close(c, m), "acc_trade_price_24h": self.acc_trade_price_24h(c),
                    "timestamp": self.created_ms} for c in self.codes}

    # ---- REST: the past --------------------------------------------------------------------------------------
    def past_trades(self, code: str, before_sid: int | None, count: int) -> list[dict[str, Any]]:
        """Up to `count` trade frames older than the live feed (and than `before_sid`), newest first, back to the
        history start."""
        if code not in self.codes or count <= 0:
            return []
        boundary = self.start_ms if self.start_ms is not None else self.clock()
        top = boundary - 1 if before_sid is None else min(boundary - 1, before_sid // 1000)
        out: list[dict[str, Any]] = []
        minute = top // MINUTE_MS
        while len(out) < count and (minute + 1) * MINUTE_MS > self.history_start_ms:
            for t in reversed(self.trades(code, minute)):
                if t.ts_ms >= boundary or (before_sid is not None and t.sid >= before_sid):
                    continue
                if t.ts_ms < self.history_start_ms:
                    break
                out.append(self.trade_msg(code, t))
                if len(out) >= count:
                    break
            minute -= 1
        return out

    # ---- the live feed ---------------------------------------------------------------------------------------
    def _ticker(self, code: str, st: _State, t: int, trade: dict[str, Any]) -> dict[str, Any]:
        chg = st.price - st.prev_close
        d, tt = _date_time(t)
        acc24 = self.acc_trade_price_24h(code)
        return {
            "type": "ticker", "code": code, "opening_price": st.open, "high_price": st.high, "low_price": st.low,
            "trade_price": st.price, "prev_closing_price": st.prev_close,
            "change": "RISE" if chg > 0 else "FALL" if chg < 0 else "EVEN", "change_price": abs(chg),
            "signed_change_price": chg, "change_rate": abs(chg) / st.prev_close,
            "signed_change_rate": chg / st.prev_close, "trade_volume": trade["trade_volume"],
            "acc_trade_volume": st.acc_vol, "acc_trade_volume_24h": acc24 / st.price, "acc_trade_price": st.acc_val,
            "acc_trade_price_24h": acc24, "trade_date": d.replace("-", ""), "trade_time": tt.replace(":", ""),
            "trade_timestamp": trade["trade_timestamp"], "ask_bid": trade["ask_bid"],
            "acc_ask_volume": st.acc_ask, "acc_bid_volume": st.acc_bid, "highest_52_week_price": st.high * 1.5,
            "highest_52_week_date": "2025-01-20", "lowest_52_week_price": st.low * 0.5,
            "lowest_52_week_date": "2024-08-05", "market_state": "ACTIVE", "delisting_date": None,
            "timestamp": trade["timestamp"] + 1, "stream_type": "REALTIME",
        }

    def _orderbook(self, code: str, price: float, t: int) -> dict[str, Any]:
        r = rng_for(self.world.seed, "orderbook", code, t)
        tick = krw_tick(price)
        units = [{"ask_price": on_grid(price + tick * (i + 1)), "bid_price": on_grid(max(tick, price - tick * i)),
                  "ask_size": round(r.expovariate(1.0) * 2e6 / price, 8),
                  "bid_size": round(r.expovariate(1.0) * 2e6 / price, 8)} for i in range(self.depth)]
        return {
            "type": "orderbook", "code": code, "timestamp": t,
            "total_ask_size": round(sum(u["ask_size"] for u in units), 8),
            "total_bid_size": round(sum(u["bid_size"] for u in units), 8),
            "orderbook_units": units, "stream_type": "REALTIME", "level": 0,
        }

    def _minute(self, minute: int, start: int, states: dict[str, _State]) -> list[tuple[int, int, int, dict]]:
        out: list[tuple[int, int, int, dict]] = []
        for ci, code in enumerate(self.codes):
            st = states[code]
            day = minute // 1440
            if day != st.day:  # a new UTC day: yesterday's last close is the reference
                st.day, st.prev_close = day, self.world.day_open(code, minute)
                st.open = st.high = st.low = st.price
            k = 0
            for t in self.trades(code, minute):
                if t.ts_ms < start:
                    continue
                msg = self.trade_msg(code, t)
                st.price = t.price
                st.high, st.low = max(st.high, t.price), min(st.low, t.price)
                st.acc_vol += t.volume
                st.acc_val += t.volume * t.price
                if t.side == "ASK":
                    st.acc_ask += t.volume
                else:
                    st.acc_bid += t.volume
                out.append((t.ts_ms, ci, k, msg))
                k += 1
                if t.ts_ms - st.last_ticker_ms >= self.ticker_ms:
                    st.last_ticker_ms = t.ts_ms
                    out.append((t.ts_ms, ci, k, self._ticker(code, st, t.ts_ms, msg)))
                    k += 1
            if self.orderbook_ms > 0:
                phase = int(_unit(ci + 7) * self.orderbook_ms)
                first = minute * MINUTE_MS + phase
                for tb in range(first, (minute + 1) * MINUTE_MS, self.orderbook_ms):
                    if tb >= start:
                        # the book stands around the last trade before it
                        trades = [x for x in self.trades(code, minute) if x.ts_ms <= tb]
                        price = trades[-1].price if trades else self.world.close(code, minute - 1)
                        out.append((tb, ci, 1_000_000 + tb, self._orderbook(code, price, tb)))
        out.sort(key=lambda e: (e[0], e[1], e[2]))
        return out

    def events(self, start_ms: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """Endless (event time ms, DEFAULT message) from `start_ms` (default: now), in time order. The start is
        fixed here, not at the first event: the REST past ends there from now on."""
        start = self.clock() if start_ms is None else start_ms
        self.start_ms = start
        minute = start // MINUTE_MS
        states = {}
        for c in self.codes:
            price = self.world.close(c, minute - 1)
            states[c] = _State(prev_close=self.world.day_open(c, minute), open=price, high=price, low=price,
                               price=price, day=minute // 1440)

        def gen() -> Iterator[tuple[int, dict[str, Any]]]:
            m = minute
            while True:
                for t, _, _, msg in self._minute(m, start, states):
                    yield t, msg
                m += 1

        return gen()
