"""Upbit WebSocket field names: DEFAULT (long) → SIMPLE (abbreviated), per message type, as Upbit documents them.

A frame carries one spelling or the other whatever was requested: an object with `type` uses the DEFAULT names,
one with `ty` the SIMPLE names. The parsers in `coinpulse_upbit.protocol` read only some of these fields (their
docstring lists which); the tables are complete so that a frame can be translated name for name.

The simulator (services/sim-upbit, `fields.py`) writes its frames from its own copy of these tables, on purpose:
it is the independent oracle, and `libs/upbit/tests/test_sim_parity.py` holds the two copies together.
"""

from __future__ import annotations

TRADE, TICKER, ORDERBOOK, STATUS, ERROR = "trade", "ticker", "orderbook", "status", "error"

# DEFAULT name -> SIMPLE name, per type
TRADE_FIELDS = {
    "type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv", "ask_bid": "ab",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "trade_date": "td", "trade_time": "ttm",
    "trade_timestamp": "ttms", "timestamp": "tms", "sequential_id": "sid", "best_ask_price": "bap",
    "best_ask_size": "bas", "best_bid_price": "bbp", "best_bid_size": "bbs", "stream_type": "st",
}
TICKER_FIELDS = {
    "type": "ty", "code": "cd", "opening_price": "op", "high_price": "hp", "low_price": "lp", "trade_price": "tp",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp", "signed_change_price": "scp",
    "change_rate": "cr", "signed_change_rate": "scr", "trade_volume": "tv", "acc_trade_volume": "atv",
    "acc_trade_volume_24h": "atv24h", "acc_trade_price": "atp", "acc_trade_price_24h": "atp24h",
    "trade_date": "tdt", "trade_time": "ttm", "trade_timestamp": "ttms", "ask_bid": "ab", "acc_ask_volume": "aav",
    "acc_bid_volume": "abv", "highest_52_week_price": "h52wp", "highest_52_week_date": "h52wdt",
    "lowest_52_week_price": "l52wp", "lowest_52_week_date": "l52wdt", "market_state": "ms",
    "delisting_date": "dd", "timestamp": "tms", "stream_type": "st",
}
ORDERBOOK_FIELDS = {
    "type": "ty", "code": "cd", "total_ask_size": "tas", "total_bid_size": "tbs", "orderbook_units": "obu",
    "timestamp": "tms", "level": "lv", "stream_type": "st",
}
UNIT_FIELDS = {"ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs"}  # one orderbook unit

FIELDS = {TRADE: TRADE_FIELDS, TICKER: TICKER_FIELDS, ORDERBOOK: ORDERBOOK_FIELDS}  # by message type
DEFAULT_NAMES = {ty: {s: d for d, s in names.items()} for ty, names in FIELDS.items()}  # SIMPLE -> DEFAULT
UNIT_DEFAULT_NAMES = {s: d for d, s in UNIT_FIELDS.items()}

STREAM_TYPES = frozenset({"SNAPSHOT", "REALTIME"})
SIDES = frozenset({"ASK", "BID"})
