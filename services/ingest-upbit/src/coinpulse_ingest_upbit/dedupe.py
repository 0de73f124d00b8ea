"""Trade identity `(market, sequential_id)`: a bounded recent-set per market, plus each market's event-time watermark.

Sids collide across markets, so the set is per market. SNAPSHOT frames repeat the last trade and gap backfill
overlaps the live stream; both are dropped here. The state is seeded from the tail of the trade topic on start, so
a restart doubles nothing.
"""

from __future__ import annotations

from collections import deque


class _MarketSeen:
    __slots__ = ("ids", "order", "max_ts")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.order: deque[int] = deque()
        self.max_ts: int | None = None


class TradeDeduper:
    def __init__(self, capacity_per_market: int = 200_000):
        if capacity_per_market < 1:
            raise ValueError("capacity_per_market must be >= 1")
        self.capacity = capacity_per_market
        self._markets: dict[str, _MarketSeen] = {}

    def _get(self, market: str) -> _MarketSeen:
        st = self._markets.get(market)
        if st is None:
            st = self._markets[market] = _MarketSeen()
        return st

    def add(self, market: str, sid: int, trade_ts: int) -> bool:
        """Record a trade; True when it is new (produce it), False for a duplicate."""
        st = self._markets.get(market) or self._get(market)
        if sid in st.ids:
            return False
        st.ids.add(sid)
        st.order.append(sid)
        if len(st.order) > self.capacity:
            st.ids.discard(st.order.popleft())
        if st.max_ts is None or trade_ts > st.max_ts:
            st.max_ts = trade_ts
        return True

    def forget(self, market: str, sid: int) -> None:
        """Un-see a trade that could not be handed to Kafka, so a later backfill can bring it back."""
        st = self._markets.get(market)
        if st is not None:
            st.ids.discard(sid)

    def seen(self, market: str, sid: int) -> bool:
        st = self._markets.get(market)
        return st is not None and sid in st.ids

    def watermark(self, market: str) -> int | None:
        """Latest trade time seen for the market (epoch ms), None if nothing seen yet."""
        st = self._markets.get(market)
        return None if st is None else st.max_ts

    def markets(self) -> list[str]:
        return list(self._markets)

    def size(self, market: str) -> int:
        st = self._markets.get(market)
        return 0 if st is None else len(st.ids)
