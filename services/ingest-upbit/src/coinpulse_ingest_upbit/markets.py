"""Which markets to subscribe: a configured list, or the top N KRW markets by 24-hour trade value."""

from __future__ import annotations

from typing import Any


def parse_market_list(text: str | None) -> list[str]:
    """`"krw-btc, KRW-ETH,,"` → `["KRW-BTC", "KRW-ETH"]` (upper case, order kept, duplicates removed)."""
    out: list[str] = []
    for part in (text or "").split(","):
        code = part.strip().upper()
        if code and code not in out:
            out.append(code)
    return out


def select_top_n(tickers: list[dict[str, Any]], n: int, quote: str = "KRW") -> list[str]:
    """Top `n` markets of `quote` by `acc_trade_price_24h` from a `/v1/ticker/all` reply (ties: market code)."""
    rows = []
    for t in tickers:
        m = t.get("market")
        v = t.get("acc_trade_price_24h")
        if isinstance(m, str) and m.startswith(f"{quote}-") and isinstance(v, int | float):
            rows.append((-float(v), m))
    rows.sort()
    return [m for _, m in rows[:n]]
