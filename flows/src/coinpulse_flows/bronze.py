"""Upbit trade frames in bronze → silver trade records.

Bronze `upbit.raw` values (schemas/raw_frame.avsc) carry the frame text in `payload`; a frame is one JSON object
or a JSON array of them, in DEFAULT or SIMPLE field names. Raw payload fields read here (DEFAULT / SIMPLE):
type ty, code cd, trade_price tp, trade_volume tv, ask_bid ab, prev_closing_price pcp, change c, change_price cp,
trade_timestamp ttms, sequential_id sid, stream_type st. Anything that is not a well-formed trade is counted, never
raised: backfill reports how many frames it could not use.

This mirrors the live parser in ingest-upbit (services never import each other); a shared parser in libs/ would
remove the duplication.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

SIMPLE = {"type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
          "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_timestamp": "ttms",
          "sequential_id": "sid", "stream_type": "st"}


def _get(m: dict[str, Any], name: str) -> Any:
    return m[name] if name in m else m.get(SIMPLE[name])


def _opt_float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def parse_trade(m: dict[str, Any], received_at_ms: int) -> dict[str, Any] | None:
    if _get(m, "type") != "trade":
        return None
    market, sid, ts = _get(m, "code"), _get(m, "sequential_id"), _get(m, "trade_timestamp")
    price, volume, side = _get(m, "trade_price"), _get(m, "trade_volume"), _get(m, "ask_bid")
    if not isinstance(market, str) or side not in ("ASK", "BID"):
        raise ValueError("bad market or ask_bid")
    rec = {"market": market, "sequential_id": int(sid), "trade_timestamp": int(ts), "price": float(price),
           "volume": float(volume), "ask_bid": side, "prev_closing_price": _opt_float(_get(m, "prev_closing_price")),
           "change": _get(m, "change") if isinstance(_get(m, "change"), str) else None,
           "change_price": _opt_float(_get(m, "change_price")),
           "stream_type": str(_get(m, "stream_type") or "REALTIME"), "backfilled": True,
           "received_at": int(received_at_ms)}
    if rec["price"] <= 0 or rec["volume"] < 0:
        raise ValueError("non-positive price or negative volume")
    return rec


def trades_of_frame(raw: dict[str, Any], stats: Counter) -> list[dict[str, Any]]:
    """Trades in one bronze record; problems are counted in `stats` by reason."""
    try:
        obj = json.loads(raw["payload"])
    except (KeyError, TypeError, ValueError):
        stats["bad_json"] += 1
        return []
    out = []
    for m in obj if isinstance(obj, list) else [obj]:
        if not isinstance(m, dict):
            stats["not_an_object"] += 1
            continue
        try:
            rec = parse_trade(m, raw.get("received_at") or 0)
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
