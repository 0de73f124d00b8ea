"""The bronze frame reader: a bronze `upbit.raw` record → its trades, by the live parser; every refusal counted by
reason, never raised. (That it reads what the real ingester and bronze sink wrote is flows' test,
`test_the_bronze_reader_gives_the_trades_the_ingester_made_from_what_the_sink_wrote`.)"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest
from coinpulse_upbit import protocol as P
from coinpulse_upbit.bronze import received_ms, trades_of_frame

pytestmark = pytest.mark.unit
RECV = 1_747_785_700_000
TRADE = {"type": "trade", "code": "krw-btc", "trade_price": 100.0, "trade_volume": 0.5, "ask_bid": "BID",
         "trade_timestamp": 1_747_785_600_123, "sequential_id": 42}
REST = {"market": "KRW-BTC", "timestamp": 1_747_785_600_000, "trade_price": 10.0, "trade_volume": 0.1,
        "ask_bid": "ASK", "sequential_id": 50}


def ws(payload, received_at=RECV) -> dict:
    return {"source": "upbit.ws", "payload": payload if isinstance(payload, str) else json.dumps(payload),
            "received_at": received_at}


def test_a_ws_trade_is_the_live_parsers_record():
    stats: Counter = Counter()
    assert trades_of_frame(ws(TRADE), stats) == [P.parse_message(TRADE, RECV).record] and not stats


def test_a_rest_page_gives_backfill_trades():
    stats: Counter = Counter()
    got = trades_of_frame({"source": "upbit.rest", "payload": json.dumps([REST, dict(REST, sequential_id=49)]),
                           "received_at": RECV}, stats)
    assert [t["sequential_id"] for t in got] == [50, 49] and not stats
    assert got[0] == P.parse_rest_trade(REST, RECV) and got[0]["backfilled"] is True


def test_received_at_may_be_the_avro_decoders_datetime():
    when = dt.datetime.fromtimestamp(RECV / 1000, dt.UTC)
    assert trades_of_frame(ws(TRADE, when), Counter())[0]["received_at"] == RECV == received_ms(when)


@pytest.mark.parametrize(("raw", "reason"), [
    ({"source": "upbit.ws"}, "bad_json"),  # no payload
    (ws("{not json"), "bad_json"),
    (ws('{"type":"trade","trade_price":NaN}'), "bad_json"),  # the live decoder refuses the literal
    ({"source": "upbit.rest", "payload": json.dumps(REST), "received_at": RECV}, "bad_rest_reply"),
    (ws([]), "empty_list"),
    (ws([3]), "not_an_object"),
    (ws({"type": ["trade"], "code": "KRW-BTC"}), "bad_type"),
    (ws({"type": "ticker", "code": "KRW-BTC"}), "not_a_trade"),  # not validated: the backfill wants trades only
    (ws({"status": "UP"}), "not_a_trade"),
    (ws(dict(TRADE, trade_price=True)), "bad_trade"),
    (ws(dict(TRADE, stream_type=5)), "bad_trade"),  # the live rule: a stream_type that is no string is refused
    ({"source": "upbit.rest", "payload": json.dumps([dict(REST, ask_bid=None)]), "received_at": RECV}, "bad_trade"),
])
def test_what_is_no_good_trade_is_counted_by_reason(raw, reason):
    stats: Counter = Counter()
    assert trades_of_frame(raw, stats) == [] and stats == Counter({reason: 1})
