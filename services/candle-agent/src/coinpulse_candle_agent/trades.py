"""The trade as the candle rules see it, parsed from a decoded `upbit.trade` value (schemas/trade.avsc).

Fields used: `market`, `sequential_id` (identity with market), `trade_timestamp` (event time, epoch ms or the
datetime fastavro returns for timestamp-millis), `price`, `volume`, `ask_bid` (BID = buy taker, ASK = sell taker).
Anything that cannot make a candle (missing field, non-finite or non-positive price/volume, unknown side) raises
`BadTrade`; the agent dead-letters it with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class BadTrade(ValueError):
    """A trade record that cannot contribute to a candle."""


class FutureTimestamp(ValueError):
    """An event time too far ahead of the wall clock: a bad clock upstream. Accepting it would drag the partition's
    event time forward, and every later record would be late (and the persisted watermark keeps the stall)."""

    reason = "future_timestamp"

    def __init__(self, field: str, ts_ms: int, now_ms: int, max_skew_ms: int):
        super().__init__(f"{field}={ts_ms} is {(ts_ms - now_ms) / 1000:.0f} s ahead of the wall clock "
                         f"(at most {max_skew_ms / 1000:.0f} s allowed)")


def check_not_future(field: str, ts_ms: int, now_ms: int, max_skew_ms: int) -> None:
    """Raise FutureTimestamp when `ts_ms` is more than `max_skew_ms` ahead of `now_ms`."""
    if ts_ms - now_ms > max_skew_ms:
        raise FutureTimestamp(field, ts_ms, now_ms, max_skew_ms)


def dead_letter_reason(exc: Exception) -> str:
    """The dead-letter reason of a rejected record: `future_timestamp: ...` or `<ExceptionType>: ...`."""
    if isinstance(exc, FutureTimestamp):
        return f"{FutureTimestamp.reason}: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(slots=True, frozen=True)
class Trade:
    market: str
    seq: int
    ts: int  # epoch ms
    price: float
    volume: float
    bid: bool  # ask_bid == BID


def to_ms(value: Any) -> int:
    """Epoch milliseconds from an int or an aware datetime (fastavro's timestamp-millis)."""
    if isinstance(value, bool):
        raise BadTrade("timestamp is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise BadTrade("naive datetime timestamp")
        return _dt_ms(value)
    raise BadTrade(f"timestamp of type {type(value).__name__}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt_ms(value: datetime) -> int:
    # exact integer arithmetic (float timestamps can be off by one millisecond)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def trade_from_record(rec: dict[str, Any]) -> Trade:
    try:
        market = rec["market"]
        seq = rec["sequential_id"]
        ts = to_ms(rec["trade_timestamp"])
        price = float(rec["price"])
        volume = float(rec["volume"])
        side = rec["ask_bid"]
    except (KeyError, TypeError) as exc:
        raise BadTrade(f"missing or mistyped field: {exc}") from exc
    if not isinstance(market, str) or not market:
        raise BadTrade("empty market")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise BadTrade("sequential_id is not an integer")
    if not (math.isfinite(price) and price > 0):
        raise BadTrade(f"price {price!r} is not a positive finite number")
    if not (math.isfinite(volume) and volume > 0):
        raise BadTrade(f"volume {volume!r} is not a positive finite number")
    if side not in ("BID", "ASK"):
        raise BadTrade(f"ask_bid {side!r} is neither BID nor ASK")
    return Trade(market, seq, ts, price, volume, side == "BID")
