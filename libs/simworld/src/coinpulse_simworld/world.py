"""One clock and one deterministic world: per market the 1-minute price path, per coin the expected mentions and
their sentiment, each minute a pure function of (scenario, market, minute).

The clock is UTC epoch time: minute m covers [m·60 000, (m+1)·60 000) ms, the candle agent's buckets. Every random
number comes from a generator seeded by a hash of (scenario seed, what, market, UTC day), never from a process's
state, so two processes (sim-upbit, sim-dcinside) that load the same file compute the same world for any range of
time they are asked, in any order, without talking to each other; a market's world does not depend on which other
markets the scenario has.

Price: log price = log(price) + X(t). Each UTC day has a level L_d ~ N(0, level_sd) (X at the day's first instant);
within the day X is a random walk of 1-minute steps sigma·z + shocks (+ the leads coupling's moves), bridged so
that it ends the day exactly at the next day's level (a drift of (L_{d+1} - L_d - sum of steps) / 1440 per minute,
tiny next to sigma), so a price never drifts away over months and any day is computed alone. The minute's close is
that price rounded to Upbit's KRW tick grid, and the minute's return is the log ratio of consecutive closes: the
return the 1-minute candles of sim-upbit's trades show exactly.

Community: expected coin documents per minute = mentions · (1 + E(m)), E the sum of the running events: a burst
(probability burst_rate per minute, random sign) adds (burst_factor - 1)·(1 - age/burst_minutes) for age in
[0, burst_minutes); a follows response adds (factor - 1)·(1 - age/minutes) from `lag` minutes after a trigger
minute. Sentiment = (sentiment_bias + strength · sum of event contributions × their sign) / (1 + E), in [-1, 1]:
what (positive - negative) / (positive + negative) of that minute's documents comes to on average.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from coinpulse_simworld.scenario import MarketSpec, Scenario
from coinpulse_simworld.ticks import on_grid

_T = TypeVar("_T")

MINUTE_MS = 60_000
DAY_MINUTES = 1440


def now_ms() -> int:
    """The one clock: wall time, epoch milliseconds."""
    return time.time_ns() // 1_000_000


def minute_of(ms: int) -> int:
    return ms // MINUTE_MS


def rng_for(seed: int, *parts: Any) -> random.Random:
    """A generator determined by the seed and the parts only (stable across processes and runs)."""
    key = "\x1f".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big"))


@dataclass(frozen=True)
class _Prims:
    z: list[float]  # N(0, 1) per minute
    shock: list[float]  # signed jump in sigma, 0 when none
    burst: list[int]  # +1 / -1: a burst of mentions starts this minute with that sentiment sign; 0: none


@dataclass(frozen=True)
class Series:
    """A market's world over minutes [start, start + len): closes, returns, expected mentions and sentiment."""

    code: str
    start: int  # first minute (epoch minutes)
    close: list[float]
    ret: list[float]  # log(close[m] / close[m - 1])
    mentions: list[float]  # expected coin documents in the minute
    sentiment: list[float]  # expected sentiment of the minute's documents

    @property
    def minutes(self) -> range:
        return range(self.start, self.start + len(self.close))


class World:
    def __init__(self, scenario: Scenario, cache_days: int = 256) -> None:
        self.scenario = scenario
        self.seed = scenario.seed
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._cache_max = cache_days
        for spec in scenario.markets.values():
            c = spec.coupling
            if c.kind == "community_follows" and c.lag + c.minutes > DAY_MINUTES:
                raise ValueError(f"{spec.code}: lag + minutes must stay within a day")

    @property
    def markets(self) -> list[str]:
        return self.scenario.codes

    def spec(self, code: str) -> MarketSpec:
        try:
            return self.scenario.markets[code]
        except KeyError:
            raise KeyError(f"market {code} is not in scenario {self.scenario.name}") from None

    def _cached(self, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        hit: _T | None = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        value = make()
        self._cache[key] = value
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return value

    # ---- primitives ------------------------------------------------------------------------------------------
    def _prims(self, code: str, day: int) -> _Prims:
        def make() -> _Prims:
            s = self.spec(code)
            r = rng_for(self.seed, "prim", code, day)
            lo, hi = s.shock_size
            z, shock, burst = [0.0] * DAY_MINUTES, [0.0] * DAY_MINUTES, [0] * DAY_MINUTES
            for j in range(DAY_MINUTES):  # always the same draws per minute: a rate change moves no other draw
                z[j] = r.gauss(0.0, 1.0)
                u, size, sign_u, bu, bs = r.random(), r.uniform(lo, hi), r.random(), r.random(), r.random()
                if u < s.shock_rate:
                    shock[j] = size if sign_u < 0.5 else -size
                if bu < s.burst_rate:
                    burst[j] = 1 if bs < 0.5 else -1
            return _Prims(z, shock, burst)

        return self._cached(("prims", code, day), make)

    def _level(self, code: str, day: int) -> float:
        return rng_for(self.seed, "level", code, day).gauss(0.0, self.spec(code).level_sd)

    def burst(self, code: str, minute: int) -> int:
        """Sign of the burst of mentions starting at this minute (0: none)."""
        return self._prims(code, minute // DAY_MINUTES).burst[minute % DAY_MINUTES]

    # ---- price -----------------------------------------------------------------------------------------------
    def _path(self, code: str, day: int) -> tuple[list[float], list[float]]:
        def make() -> tuple[list[float], list[float]]:
            s = self.spec(code)
            p = self._prims(code, day)
            x = [s.sigma * (p.z[j] + p.shock[j]) for j in range(DAY_MINUTES)]
            c = s.coupling
            if c.kind == "community_leads":
                first = day * DAY_MINUTES
                for j in range(DAY_MINUTES):
                    b = self.burst(code, first + j - c.lag)
                    if b:
                        x[j] += b * c.move * s.sigma
            l0, l1 = self._level(code, day), self._level(code, day + 1)
            drift = (l1 - l0 - math.fsum(x)) / DAY_MINUTES
            closes = [0.0] * DAY_MINUTES
            acc = l0
            for j in range(DAY_MINUTES - 1):
                acc += x[j] + drift
                closes[j] = on_grid(s.price * math.exp(acc))
            closes[-1] = on_grid(s.price * math.exp(l1))  # = the next day's opening reference, exactly
            prev = on_grid(s.price * math.exp(l0))  # the previous day's last close
            rets = [0.0] * DAY_MINUTES
            for j in range(DAY_MINUTES):
                rets[j] = math.log(closes[j] / prev)
                prev = closes[j]
            return closes, rets

        return self._cached(("path", code, day), make)

    def close(self, code: str, minute: int) -> float:
        """The minute's last trade price (on the KRW tick grid)."""
        return self._path(code, minute // DAY_MINUTES)[0][minute % DAY_MINUTES]

    def ret(self, code: str, minute: int) -> float:
        """log(close(minute) / close(minute - 1))."""
        return self._path(code, minute // DAY_MINUTES)[1][minute % DAY_MINUTES]

    def day_open(self, code: str, minute: int) -> float:
        """The close of the last minute of the previous UTC day (the day's reference price)."""
        return self.close(code, (minute // DAY_MINUTES) * DAY_MINUTES - 1)

    # ---- community -------------------------------------------------------------------------------------------
    def _community(self, code: str, day: int) -> tuple[list[float], list[float]]:
        def make() -> tuple[list[float], list[float]]:
            s = self.spec(code)
            strength = self.scenario.community.sentiment_strength
            first = day * DAY_MINUTES
            e = [0.0] * DAY_MINUTES
            es = [0.0] * DAY_MINUTES

            def add(start: int, length: int, factor: float, sign: int) -> None:
                for age in range(length):
                    j = start + age - first
                    if 0 <= j < DAY_MINUTES:
                        v = (factor - 1.0) * (1.0 - age / length)
                        e[j] += v
                        es[j] += v * sign

            for b in range(first - s.burst_minutes + 1, first + DAY_MINUTES):
                sign = self.burst(code, b)
                if sign:
                    add(b, s.burst_minutes, s.burst_factor, sign)
            c = s.coupling
            if c.kind == "community_follows":
                limit = c.k * s.sigma
                for t in range(first - c.lag - c.minutes + 1, first + DAY_MINUTES - c.lag):
                    r = self.ret(code, t)
                    if abs(r) > limit:
                        add(t + c.lag, c.minutes, c.factor, 1 if r > 0 else -1)
            lam = [s.mentions * (1.0 + e[j]) for j in range(DAY_MINUTES)]
            sent = [max(-1.0, min(1.0, (s.sentiment_bias + strength * es[j]) / (1.0 + e[j])))
                    for j in range(DAY_MINUTES)]
            return lam, sent

        return self._cached(("community", code, day), make)

    def mention_rate(self, code: str, minute: int) -> tuple[float, float]:
        """(expected coin documents, expected sentiment) of the minute."""
        lam, sent = self._community(code, minute // DAY_MINUTES)
        j = minute % DAY_MINUTES
        return lam[j], sent[j]

    # ---- ranges ----------------------------------------------------------------------------------------------
    def series(self, code: str, start_minute: int, end_minute: int) -> Series:
        """The market's world over minutes [start_minute, end_minute)."""
        ms = range(start_minute, end_minute)
        rates = [self.mention_rate(code, m) for m in ms]
        return Series(code, start_minute, [self.close(code, m) for m in ms], [self.ret(code, m) for m in ms],
                      [x for x, _ in rates], [y for _, y in rates])

    def window(self, start_ms: int, end_ms: int) -> dict[str, Series]:
        """Every market's world over the minutes that overlap [start_ms, end_ms)."""
        a, b = minute_of(start_ms), minute_of(end_ms - 1) + 1
        return {code: self.series(code, a, b) for code in self.markets}
