"""What happens within a minute, drawn from the world: a market's trades, the community's documents.

Both are pure functions of (scenario, market or coin, minute), seeded like the world itself, so a simulator
serving the past (REST pages, list pages) and the live feed produce the same trades and documents.

Trades: Poisson arrivals at `trades_per_second` (at least one a minute), prices on a Brownian bridge in log space
from the previous close to this minute's close (intra-minute volatility sigma), on the tick grid, the last trade
exactly at the close: the minute's 1-minute candle closes at `World.close`. Sequential ids are Upbit-shaped:
trade time in ms x 1000 + a counter among the market's trades of that millisecond.

Documents: per coin, Poisson(expected mentions) documents, each naming the coin once; a share `polar_share` carries
one lexicon word, positive with probability (1 + sentiment) / 2; plus Poisson(noise_per_minute) documents that name
no coin. Times are whole seconds inside the minute (the gallery shows seconds).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from coinpulse_simworld.ticks import on_grid
from coinpulse_simworld.world import MINUTE_MS, World, rng_for


@dataclass(frozen=True, slots=True)
class Trade:
    ts_ms: int
    price: float
    volume: float
    side: str  # ASK (a sell hitting the bid) / BID
    sid: int  # sequential id


@dataclass(frozen=True, slots=True)
class Doc:
    ts_ms: int  # whole seconds
    market: str | None  # the coin it names once; None: names no coin
    polarity: int  # +1 one positive lexicon word, -1 one negative, 0 none
    post: bool  # a post (else a comment on a recent post)
    slot: float  # uniform [0, 1): which gallery (the simulator maps it onto its galleries)
    pick: float  # uniform [0, 1): which recent post a comment goes to
    key: int  # seed for the wording


def poisson(r: random.Random, lam: float) -> int:
    """Poisson(lam) by multiplication (Knuth), in chunks of at most 30 so exp() never underflows."""
    n = 0
    while lam > 0:
        part = min(lam, 30.0)
        lam -= part
        limit, p = math.exp(-part), r.random()
        while p > limit:
            n += 1
            p *= r.random()
    return n


def minute_trades(world: World, code: str, minute: int) -> list[Trade]:
    """The market's trades of this minute, in time order; the last one at `world.close(code, minute)`."""
    s = world.spec(code)
    r = rng_for(world.seed, "trades", code, minute)
    times: list[int] = []
    t = r.expovariate(s.trades_per_second) * 1000
    while t < MINUTE_MS:
        times.append(int(t))
        t += r.expovariate(s.trades_per_second) * 1000
    if not times:
        times = [r.randrange(MINUTE_MS)]
    a, b = math.log(world.close(code, minute - 1)), math.log(world.close(code, minute))
    # Brownian bridge from a (at the minute's start) to b (at its end), variance sigma^2 per minute
    w, prev_u, ws = 0.0, 0.0, []
    for tm in times:
        u = tm / MINUTE_MS
        w += r.gauss(0.0, s.sigma * math.sqrt(max(u - prev_u, 0.0)))
        ws.append((u, w))
        prev_u = u
    w_end = w + r.gauss(0.0, s.sigma * math.sqrt(1.0 - prev_u))
    close = world.close(code, minute)
    base = minute * MINUTE_MS
    out: list[Trade] = []
    side = "BID" if r.random() < 0.5 else "ASK"
    last_ms, same_ms = -1, 0
    for i, (tm, (u, wu)) in enumerate(zip(times, ws, strict=True)):
        price = close if i == len(times) - 1 else on_grid(math.exp(a + (b - a) * u + wu - u * w_end))
        if r.random() >= 0.6:
            side = "ASK" if side == "BID" else "BID"
        notional = math.exp(r.gauss(math.log(150_000), 1.4))  # KRW value of one trade
        ts = base + tm
        same_ms = same_ms + 1 if ts == last_ms else 0
        last_ms = ts
        out.append(Trade(ts, price, round(max(notional / price, 1e-8), 8), side, ts * 1000 + same_ms))
    return out


def minute_docs(world: World, minute: int) -> list[Doc]:
    """The community's documents of this minute, in time order (then market order)."""
    comm = world.scenario.community
    docs: list[Doc] = []
    base = minute * MINUTE_MS
    for code in [*world.markets, None]:
        if code is None:
            r = rng_for(world.seed, "docs", "", minute)
            lam, sent = comm.noise_per_minute, 0.0
        else:
            r = rng_for(world.seed, "docs", code, minute)
            lam, sent = world.mention_rate(code, minute)
        for _ in range(poisson(r, lam)):
            sec, polar, pos, post = r.randrange(60), r.random(), r.random(), r.random()
            polarity = 0
            if polar < comm.polar_share:
                polarity = 1 if pos < (1.0 + sent) / 2.0 else -1
            docs.append(Doc(base + sec * 1000, code, polarity, post < comm.post_share, r.random(), r.random(),
                            r.getrandbits(63)))
    order = {c: i for i, c in enumerate(world.markets)}
    docs.sort(key=lambda d: (d.ts_ms, order.get(d.market or "", len(order))))
    return docs
