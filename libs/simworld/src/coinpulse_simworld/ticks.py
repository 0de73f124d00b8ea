"""Upbit's KRW-market price grid, once: the world and sim-upbit's market generator both use it."""

from __future__ import annotations


def krw_tick(price: float) -> float:
    """Upbit's KRW-market price unit for a price level."""
    for floor, tick in ((2_000_000, 1000), (1_000_000, 500), (500_000, 100), (100_000, 50), (10_000, 10),
                        (1_000, 1), (100, 0.1), (10, 0.01), (1, 0.001)):
        if price >= floor:
            return tick
    return 0.0001


def on_grid(price: float) -> float:
    """The price rounded to its tick (never below one tick)."""
    t = krw_tick(price)
    return max(t, round(round(price / t) * t, 4))
