"""Upbit WebSocket frames and REST replies → silver records, and the subscribe request. Pure: no I/O, no clock.

The one parser of the Upbit wire format: the live ingester (services/ingest-upbit) and the backfill's bronze reader
(`coinpulse_upbit.bronze`, used by flows) both call it, so they accept exactly the same frames.

A frame is UTF-8 JSON in a binary (or text) WebSocket message. Field names come in two spellings whatever was
requested (DEFAULT long names, SIMPLE abbreviations); a frame may also be a JSON array of such objects
(JSON_LIST / SIMPLE_LIST formats).

Raw payload fields (DEFAULT / SIMPLE), only the ones a silver record reads:

trade:     type ty, code cd, trade_price tp, trade_volume tv, ask_bid ab, prev_closing_price pcp, change c,
           change_price cp, trade_timestamp ttms, timestamp tms, sequential_id sid, stream_type st
ticker:    type ty, code cd, trade_price tp, opening_price op, high_price hp, low_price lp, prev_closing_price pcp,
           change c, signed_change_rate scr, trade_volume tv, acc_trade_volume_24h atv24h,
           acc_trade_price_24h atp24h, trade_timestamp ttms, timestamp tms, stream_type st
orderbook: type ty, code cd, total_ask_size tas, total_bid_size tbs, orderbook_units obu
           [ask_price ap, bid_price bp, ask_size as, bid_size bs], timestamp tms, level lv, stream_type st
status:    {"status": "UP"}
error:     {"error": {"name": "WRONG_FORMAT", "message": "..."}}

REST `/v1/trades/ticks` reply: a JSON array of objects with market, trade_date_utc, trade_time_utc, timestamp (the
trade time), trade_price, trade_volume, prev_closing_price, change_price, ask_bid, sequential_id (and sometimes
change); such trades become `stream_type` BACKFILL, `backfilled` true.

Identity fields (market, sequential_id, trade time, price, volume, side) are required; everything else a record
reads is optional (absent or null). A field that is present but mistyped (a string where a number belongs, a
number where a string belongs, a list, a dict, a boolean, an integer beyond int64, a non-finite number, "²")
raises FrameError `bad_field: <name>=...`, whichever field it is: the frame becomes a dead letter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from coinpulse_upbit.fields import (
    ERROR,
    FIELDS,
    ORDERBOOK,
    ORDERBOOK_FIELDS,
    SIDES,
    STATUS,
    STREAM_TYPES,
    TICKER,
    TICKER_FIELDS,
    TRADE,
    TRADE_FIELDS,
    UNIT_FIELDS,
)

__all__ = [
    "ERROR", "FIELDS", "ORDERBOOK", "ORDERBOOK_FIELDS", "SIDES", "STATUS", "STREAM_TYPES", "TICKER", "TICKER_FIELDS",
    "TRADE", "TRADE_FIELDS", "UNIT_FIELDS", "FrameError", "Parsed", "loads", "message_type", "parse_message",
    "parse_frame", "parse_trade", "parse_ticker", "parse_orderbook", "parse_rest_trade", "market_of",
    "subscribe_request",
]


class FrameError(ValueError):
    """A frame that cannot become a record; `reason` is a short machine-friendly tag plus detail."""

    def __init__(self, reason: str, market: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.market = market


@dataclass(slots=True)
class Parsed:
    kind: str  # trade | ticker | orderbook | status | error
    market: str | None
    record: dict[str, Any] | None  # silver record (trade/ticker/orderbook), else None
    detail: str | None = None  # status text or error name/message


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise FrameError(f"invalid_json: {e}") from None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_isfinite = math.isfinite


def _bad(name: str, v: Any, market: str | None) -> FrameError:
    return FrameError(f"bad_field: {name}={repr(v)[:80]}", market)


def _num(v: Any, name: str, market: str | None) -> float:
    t = type(v)
    if t is float:
        x: float = v
        if _isfinite(x):
            return x
    elif t is int:
        if INT64_MIN <= v <= INT64_MAX:
            return float(v)
    elif t is str:  # defensive: numbers written as strings ("1.5243E8")
        try:
            f = float(v)
        except ValueError:
            pass
        else:
            if _isfinite(f) and v.isascii():
                return f
    raise _bad(name, v, market)


def _opt_num(v: Any, name: str, market: str | None) -> float | None:
    return None if v is None else _num(v, name, market)


def _int(v: Any, name: str, market: str | None) -> int:
    t = type(v)
    if t is int:
        i: int = v
        if INT64_MIN <= i <= INT64_MAX:
            return i
    elif t is float:
        if v.is_integer() and INT64_MIN <= v <= INT64_MAX:
            return int(v)
    elif t is str and v.isascii() and v.isdigit():  # "²" and other non-ASCII digits pass isdigit, fail int()
        i = int(v)
        if i <= INT64_MAX:
            return i
    raise _bad(name, v, market)


def _opt_int(v: Any, name: str, market: str | None) -> int | None:
    return None if v is None else _int(v, name, market)


def _opt_str(v: Any, name: str, market: str | None) -> str | None:
    if v is None or type(v) is str:
        return v
    raise _bad(name, v, market)


def _stream_type(v: Any, market: str | None) -> str:
    if v is None:
        return "REALTIME"
    if type(v) is not str:
        raise _bad("stream_type", v, market)
    return v if v in STREAM_TYPES else "REALTIME"


def _side(v: Any, market: str | None) -> str:
    if type(v) is str and v in SIDES:
        return v
    raise _bad("ask_bid", v, market)


def _market(v: Any) -> str:
    if type(v) is not str or not v:
        raise _bad("code", v, None)
    return v.upper()


def parse_trade(m: dict[str, Any], received_at_ms: int, simple: bool) -> Parsed:
    g = m.get
    if simple:
        cd, sid, ttms, tms, tp, tv, ab = g("cd"), g("sid"), g("ttms"), g("tms"), g("tp"), g("tv"), g("ab")
        pcp, c, cp, st = g("pcp"), g("c"), g("cp"), g("st")
    else:
        cd, sid, ttms, tms = g("code"), g("sequential_id"), g("trade_timestamp"), g("timestamp")
        tp, tv, ab = g("trade_price"), g("trade_volume"), g("ask_bid")
        pcp, c, cp, st = g("prev_closing_price"), g("change"), g("change_price"), g("stream_type")
    market = _market(cd)
    if sid is None:
        raise FrameError("missing_field: sequential_id", market)
    if tms is not None:
        tms = _int(tms, "timestamp", market)
    if ttms is None:
        ttms = tms  # 1-second-resolution era streams carried both; fall back to the message time
        if ttms is None:
            raise FrameError("missing_field: trade_timestamp", market)
    rec = {
        "market": market,
        "sequential_id": _int(sid, "sequential_id", market),
        "trade_timestamp": _int(ttms, "trade_timestamp", market),
        "price": _num(tp, "trade_price", market),
        "volume": _num(tv, "trade_volume", market),
        "ask_bid": _side(ab, market),
        "prev_closing_price": _opt_num(pcp, "prev_closing_price", market),
        "change": _opt_str(c, "change", market),
        "change_price": _opt_num(cp, "change_price", market),
        "stream_type": _stream_type(st, market),
        "backfilled": False,
        "received_at": received_at_ms,
    }
    return Parsed(TRADE, market, rec)


def parse_ticker(m: dict[str, Any], received_at_ms: int, simple: bool) -> Parsed:
    f = TICKER_FIELDS
    g = m.get
    if simple:
        def k(name: str, /) -> Any:  # positional-only, like `g` (dict.get) in the other branch
            return g(f[name])
    else:
        k = g
    market = _market(k("code"))
    ts, tts = k("timestamp"), _opt_int(k("trade_timestamp"), "trade_timestamp", market)
    if ts is None:
        ts = tts
        if ts is None:
            raise FrameError("missing_field: timestamp", market)
    rec = {
        "market": market,
        "timestamp": _int(ts, "timestamp", market),
        "trade_price": _num(k("trade_price"), "trade_price", market),
        "opening_price": _opt_num(k("opening_price"), "opening_price", market),
        "high_price": _opt_num(k("high_price"), "high_price", market),
        "low_price": _opt_num(k("low_price"), "low_price", market),
        "prev_closing_price": _opt_num(k("prev_closing_price"), "prev_closing_price", market),
        "change": _opt_str(k("change"), "change", market),
        "signed_change_rate": _opt_num(k("signed_change_rate"), "signed_change_rate", market),
        "trade_volume": _opt_num(k("trade_volume"), "trade_volume", market),
        "acc_trade_volume_24h": _opt_num(k("acc_trade_volume_24h"), "acc_trade_volume_24h", market),
        "acc_trade_price_24h": _opt_num(k("acc_trade_price_24h"), "acc_trade_price_24h", market),
        "trade_timestamp": tts,
        "stream_type": _stream_type(k("stream_type"), market),
        "received_at": received_at_ms,
    }
    return Parsed(TICKER, market, rec)


def _unit(u: Any, simple: bool, market: str) -> dict[str, float]:
    if not isinstance(u, dict):
        raise FrameError(f"bad_field: orderbook_unit={u!r}", market)
    if simple:
        ap, bp, as_, bs = u.get("ap"), u.get("bp"), u.get("as"), u.get("bs")
    else:
        ap, bp, as_, bs = u.get("ask_price"), u.get("bid_price"), u.get("ask_size"), u.get("bid_size")
    return {
        "ask_price": _num(ap, "ask_price", market),
        "bid_price": _num(bp, "bid_price", market),
        "ask_size": _num(as_, "ask_size", market),
        "bid_size": _num(bs, "bid_size", market),
    }


def parse_orderbook(m: dict[str, Any], received_at_ms: int, simple: bool) -> Parsed:
    g = m.get
    if simple:
        cd, tas, tbs, obu, tms, lv, st = g("cd"), g("tas"), g("tbs"), g("obu"), g("tms"), g("lv"), g("st")
    else:
        cd, tas, tbs, obu = g("code"), g("total_ask_size"), g("total_bid_size"), g("orderbook_units")
        tms, lv, st = g("timestamp"), g("level"), g("stream_type")
    market = _market(cd)
    if tms is None:
        raise FrameError("missing_field: timestamp", market)
    if not isinstance(obu, list):
        raise FrameError(f"bad_field: orderbook_units={obu!r}", market)
    units = [_unit(u, simple, market) for u in obu]
    rec = {
        "market": market,
        "timestamp": _int(tms, "timestamp", market),
        "total_ask_size": _num(tas, "total_ask_size", market) if tas is not None
        else sum(u["ask_size"] for u in units),
        "total_bid_size": _num(tbs, "total_bid_size", market) if tbs is not None
        else sum(u["bid_size"] for u in units),
        "units": units,
        "level": _opt_num(lv, "level", market),
        "stream_type": _stream_type(st, market),
        "received_at": received_at_ms,
    }
    return Parsed(ORDERBOOK, market, rec)


_PARSERS = {TRADE: parse_trade, TICKER: parse_ticker, ORDERBOOK: parse_orderbook}


def message_type(m: dict[str, Any]) -> tuple[str | None, bool]:
    """`(type, simple)` of one decoded object: `type` names DEFAULT fields, else `ty` SIMPLE ones (None: neither).

    Raises FrameError `bad_field: type=...` (or `ty=`) when the type is present but not a string.
    """
    ty = m.get("type")
    simple = ty is None
    if simple:
        ty = m.get("ty")
    if type(ty) is not str and ty is not None:  # a list or dict is not even hashable
        raise _bad("ty" if simple else "type", ty, market_of(m))
    return ty, simple


def parse_message(m: Any, received_at_ms: int) -> Parsed:
    """One decoded JSON object → Parsed. Raises FrameError for anything that is not a known, well-formed frame."""
    if not isinstance(m, dict):
        raise FrameError(f"not_an_object: {type(m).__name__}")
    ty, simple = message_type(m)
    if ty is None:
        if "status" in m:
            return Parsed(STATUS, None, None, str(m["status"]))
        err = m.get("error")
        if isinstance(err, dict):
            return Parsed(ERROR, None, None, f"{err.get('name')}: {err.get('message')}")
        raise FrameError("unknown_frame: no type")
    parser = _PARSERS.get(ty)
    if parser is None:
        raise FrameError(f"unknown_type: {ty!r}")
    return parser(m, received_at_ms, simple)


def parse_frame(data: bytes | str, received_at_ms: int) -> list[Parsed]:
    """A whole WebSocket message → its records (a LIST format frame holds several). Raises FrameError."""
    obj = loads(data)
    if isinstance(obj, list):
        if not obj:
            raise FrameError("empty_list")
        return [parse_message(m, received_at_ms) for m in obj]
    return [parse_message(obj, received_at_ms)]


def market_of(obj: Any) -> str | None:
    """Best-effort market code of a decoded frame (for bronze keys / DLQ context)."""
    if isinstance(obj, dict):
        v = obj.get("code") or obj.get("cd")
        return v.upper() if isinstance(v, str) else None
    return None


# --- REST /v1/trades/ticks ------------------------------------------------------------------------------------
def parse_rest_trade(t: Any, received_at_ms: int) -> dict[str, Any]:
    """One element of a `/v1/trades/ticks` reply → a silver trade record marked BACKFILL.

    Fields: market, trade_date_utc, trade_time_utc, timestamp, trade_price, trade_volume, prev_closing_price,
    change_price, ask_bid, sequential_id.
    """
    if not isinstance(t, dict):
        raise FrameError(f"not_an_object: {type(t).__name__}")
    market = _market(t.get("market"))
    ab = _side(t.get("ask_bid"), market)
    if t.get("sequential_id") is None or t.get("timestamp") is None:
        raise FrameError("missing_field: sequential_id/timestamp", market)
    cp = _opt_num(t.get("change_price"), "change_price", market)
    pcp = _opt_num(t.get("prev_closing_price"), "prev_closing_price", market)
    change = _opt_str(t.get("change"), "change", market)
    return {
        "market": market,
        "sequential_id": _int(t.get("sequential_id"), "sequential_id", market),
        "trade_timestamp": _int(t.get("timestamp"), "timestamp", market),
        "price": _num(t.get("trade_price"), "trade_price", market),
        "volume": _num(t.get("trade_volume"), "trade_volume", market),
        "ask_bid": ab,
        "prev_closing_price": pcp,
        "change": change,
        "change_price": cp,
        "stream_type": "BACKFILL",
        "backfilled": True,
        "received_at": received_at_ms,
    }


def subscribe_request(ticket: str, markets: list[str], fmt: str = "DEFAULT", orderbook_depth: int | None = 15,
                      types: tuple[str, ...] = (TRADE, TICKER, ORDERBOOK)) -> bytes:
    """The one JSON array sent after connecting (snapshot + realtime for every type)."""
    req: list[dict[str, Any]] = [{"ticket": ticket}]
    codes = [m.upper() for m in markets]
    for ty in types:
        if ty == ORDERBOOK and orderbook_depth:
            req.append({"type": ty, "codes": [f"{c}.{orderbook_depth}" for c in codes]})
        else:
            req.append({"type": ty, "codes": codes})
    req.append({"format": fmt})
    return orjson.dumps(req)
