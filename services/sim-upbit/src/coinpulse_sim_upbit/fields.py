"""Upbit WebSocket field names: DEFAULT (long) ↔ SIMPLE (abbreviated), per message type: the simulator's writer.

Deliberately NOT imported from `coinpulse_upbit` (the parser the ingester and the backfill use): the simulator is
an independent oracle of the wire format, written from Upbit's documentation on its own, so a mistake in the
shared tables shows up as a disagreement instead of being copied into the frames the tests feed the parser.
`libs/upbit/tests/test_sim_parity.py` holds the two together: these tables equal `coinpulse_upbit.fields`, and
every frame the simulator writes (all three types, DEFAULT and SIMPLE, snapshots, the shipped dataset, the REST
trades pages) parses with `coinpulse_upbit` to the values the simulator meant. Change both, or that test fails.
"""

from __future__ import annotations

from typing import Any

TRADE = {
    "type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_date": "td", "trade_time": "ttm",
    "trade_timestamp": "ttms", "timestamp": "tms", "sequential_id": "sid", "best_ask_price": "bap",
    "best_ask_size": "bas", "best_bid_price": "bbp", "best_bid_size": "bbs", "stream_type": "st",
}
TICKER = {
    "type": "ty", "code": "cd", "opening_price": "op", "high_price": "hp", "low_price": "lp", "trade_price": "tp",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "signed_change_price": "scp",
    "change_rate": "cr", "signed_change_rate": "scr", "trade_volume": "tv", "acc_trade_volume": "atv",
    "acc_trade_volume_24h": "atv24h", "acc_trade_price": "atp", "acc_trade_price_24h": "atp24h",
    "trade_date": "tdt", "trade_time": "ttm", "trade_timestamp": "ttms", "ask_bid": "ab", "acc_ask_volume": "aav",
    "acc_bid_volume": "abv", "highest_52_week_price": "h52wp", "highest_52_week_date": "h52wdt",
    "lowest_52_week_price": "l52wp", "lowest_52_week_date": "l52wdt", "market_state": "ms",
    "delisting_date": "dd", "timestamp": "tms", "stream_type": "st",
}
ORDERBOOK = {
    "type": "ty", "code": "cd", "total_ask_size": "tas", "total_bid_size": "tbs", "orderbook_units": "obu",
    "timestamp": "tms", "level": "lv", "stream_type": "st",
}
UNIT = {"ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs"}
BY_TYPE = {"trade": TRADE, "ticker": TICKER, "orderbook": ORDERBOOK}
REVERSE = {ty: {v: k for k, v in m.items()} for ty, m in BY_TYPE.items()}
UNIT_REVERSE = {v: k for k, v in UNIT.items()}


def msg_type(msg: dict[str, Any]) -> str | None:
    return msg.get("type") or msg.get("ty")


def to_simple(msg: dict[str, Any]) -> dict[str, Any]:
    ty = msg.get("type")
    names = BY_TYPE.get(ty or "")
    if names is None:
        return msg
    out = {names.get(k, k): v for k, v in msg.items()}
    if ty == "orderbook" and isinstance(out.get("obu"), list):
        out["obu"] = [{UNIT.get(k, k): v for k, v in u.items()} for u in out["obu"]]
    return out


def to_default(msg: dict[str, Any]) -> dict[str, Any]:
    if "type" in msg or "ty" not in msg:
        return msg
    ty = msg["ty"]
    names = REVERSE.get(ty)
    if names is None:
        return {("type" if k == "ty" else k): v for k, v in msg.items()}
    out = {names.get(k, k): v for k, v in msg.items()}
    if ty == "orderbook" and isinstance(out.get("orderbook_units"), list):
        out["orderbook_units"] = [{UNIT_REVERSE.get(k, k): v for k, v in u.items()} for u in out["orderbook_units"]]
    return out
