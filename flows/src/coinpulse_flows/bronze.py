"""Upbit frames in bronze → silver trade records, accepting exactly what the live ingester accepts.

Bronze `upbit.raw` values (schemas/raw_frame.avsc) carry the frame text in `payload`:

- `source` `upbit.ws`: one JSON object or a JSON array of them. An object with `type` uses the DEFAULT names, one
  without uses the SIMPLE names (as the live parser decides). Trade fields read (DEFAULT / SIMPLE): type ty,
  code cd, trade_price tp, trade_volume tv, ask_bid ab, prev_closing_price pcp, change c, change_price cp,
  trade_timestamp ttms (falling back to timestamp tms), sequential_id sid, stream_type st;
- `source` `upbit.rest`: a `/v1/trades/ticks` reply (the ingester's gap backfill), a JSON array of market,
  trade_price, trade_volume, ask_bid, prev_closing_price, change, change_price, timestamp, sequential_id; these
  trades are `stream_type` BACKFILL, `backfilled` true, as the ingester produced them.

Anything that is not a well-formed trade is counted by reason, never raised: backfill reports how many frames it
could not use.

NOTE: this duplicates the live parser in services/ingest-upbit/src/coinpulse_ingest_upbit/protocol.py (services
never import each other, and flows must not depend on the ingester). The two must agree on what they accept: the
rules below are the live ones (numbers as int/float or numeric strings, never bools; integral floats and digit
strings for integers; market upper-cased; no sign check on price or volume; unknown stream types are REALTIME).
`flows/tests/test_units.py` pins that agreement on the shapes that used to differ; moving both into libs/ would
remove the duplication.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

SIMPLE = {"type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
          "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_timestamp": "ttms",
          "timestamp": "tms", "sequential_id": "sid", "stream_type": "st"}
SIDES = frozenset({"ASK", "BID"})
STREAM_TYPES = frozenset({"SNAPSHOT", "REALTIME"})


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _num(v: Any, name: str) -> float:
    """A finite number within int64 when integral, or an ASCII numeric string ("1.5243E8"): the live parser's rule."""
    t = type(v)
    if t is float:
        if math.isfinite(v):
            return v
    elif t is int:
        if INT64_MIN <= v <= INT64_MAX:
            return float(v)
    elif t is str and v.isascii():
        try:
            f = float(v)
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
    raise ValueError(f"bad_field: {name}={v!r}")


def _opt_num(v: Any, name: str = "") -> float | None:
    """Absent (None) stays None; present but mistyped is an error, as in the live parser."""
    return None if v is None else _num(v, name)


def _int(v: Any, name: str) -> int:
    t = type(v)
    if t is int:
        if INT64_MIN <= v <= INT64_MAX:
            return v
    elif t is float:
        if v.is_integer() and INT64_MIN <= v <= INT64_MAX:
            return int(v)
    elif t is str and v.isascii() and v.isdigit():  # "²" passes isdigit, fails int()
        i = int(v)
        if i <= INT64_MAX:
            return i
    raise ValueError(f"bad_field: {name}={v!r}")


def _opt_str(v: Any, name: str) -> str | None:
    if v is None or type(v) is str:
        return v
    raise ValueError(f"bad_field: {name}={v!r}")


def _market(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"bad_field: code={v!r}")
    return v.upper()


def parse_trade(m: dict[str, Any], received_at_ms: int) -> dict[str, Any] | None:
    """One WebSocket message → a trade record, None if it is not a trade; ValueError if it is a bad one."""
    simple = m.get("type") is None

    def g(name: str) -> Any:
        return m.get(SIMPLE[name] if simple else name)

    if g("type") != "trade":
        return None
    market = _market(g("code"))
    sid, ts = g("sequential_id"), g("trade_timestamp")
    if sid is None:
        raise ValueError("missing_field: sequential_id")
    if ts is None:
        ts = g("timestamp")
        if ts is None:
            raise ValueError("missing_field: trade_timestamp")
    side = g("ask_bid")
    if side not in SIDES:
        raise ValueError(f"bad_field: ask_bid={side!r}")
    st = g("stream_type")
    return {"market": market, "sequential_id": _int(sid, "sequential_id"), "trade_timestamp": _int(ts, "trade_timestamp"),
            "price": _num(g("trade_price"), "trade_price"), "volume": _num(g("trade_volume"), "trade_volume"),
            "ask_bid": side, "prev_closing_price": _opt_num(g("prev_closing_price"), "prev_closing_price"),
            "change": _opt_str(g("change"), "change"),
            "change_price": _opt_num(g("change_price"), "change_price"), "stream_type": st if st in STREAM_TYPES else "REALTIME",
            "backfilled": False, "received_at": int(received_at_ms)}


def parse_rest_trade(t: Any, received_at_ms: int) -> dict[str, Any]:
    """One element of a `/v1/trades/ticks` reply → a trade record (as the ingester's gap backfill makes it)."""
    if not isinstance(t, dict):
        raise ValueError(f"not_an_object: {type(t).__name__}")
    market = _market(t.get("market"))
    side = t.get("ask_bid")
    if side not in SIDES:
        raise ValueError(f"bad_field: ask_bid={side!r}")
    if t.get("sequential_id") is None or t.get("timestamp") is None:
        raise ValueError("missing_field: sequential_id/timestamp")
    return {"market": market, "sequential_id": _int(t.get("sequential_id"), "sequential_id"),
            "trade_timestamp": _int(t.get("timestamp"), "timestamp"),
            "price": _num(t.get("trade_price"), "trade_price"), "volume": _num(t.get("trade_volume"), "trade_volume"),
            "ask_bid": side, "prev_closing_price": _opt_num(t.get("prev_closing_price"), "prev_closing_price"),
            "change": _opt_str(t.get("change"), "change"),
            "change_price": _opt_num(t.get("change_price"), "change_price"), "stream_type": "BACKFILL", "backfilled": True,
            "received_at": int(received_at_ms)}


def trades_of_frame(raw: dict[str, Any], stats: Counter) -> list[dict[str, Any]]:
    """Trades in one bronze record; problems are counted in `stats` by reason."""
    try:
        obj = json.loads(raw["payload"])
    except (KeyError, TypeError, ValueError):
        stats["bad_json"] += 1
        return []
    rest = raw.get("source") == "upbit.rest"
    if rest and not isinstance(obj, list):
        stats["bad_rest_reply"] += 1
        return []
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        stats["empty_list"] += 1
        return []
    out = []
    for m in items:
        if not isinstance(m, dict):
            stats["not_an_object"] += 1
            continue
        try:
            rec = parse_rest_trade(m, raw.get("received_at") or 0) if rest else parse_trade(m, raw.get("received_at") or 0)
        except (KeyError, TypeError, ValueError):
            stats["bad_trade"] += 1
            continue
        if rec is None:
            stats["not_a_trade"] += 1
        else:
            out.append(rec)
    return out


def received_ms(value: Any) -> int:
    """`received_at` as epoch ms (the Avro decoder gives a datetime, JSON lines an int)."""
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)
