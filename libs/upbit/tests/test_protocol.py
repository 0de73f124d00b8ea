import json
from pathlib import Path

import fastavro
import orjson
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_upbit import protocol as P

pytestmark = pytest.mark.unit
GOLDEN = Path(__file__).parent / "golden"
RECV = 1_747_785_700_000


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def schema(stem: str):
    return fastavro.parse_schema(json.loads(schema_text(stem)))


def to_simple(msg: dict) -> dict:
    names = {"trade": P.TRADE_FIELDS, "ticker": P.TICKER_FIELDS, "orderbook": P.ORDERBOOK_FIELDS}[msg["type"]]
    out = {names[k]: v for k, v in msg.items()}
    if msg["type"] == "orderbook":
        out["obu"] = [{P.UNIT_FIELDS[k]: v for k, v in u.items()} for u in out["obu"]]
    return out


def one(name: str) -> P.Parsed:
    (p,) = P.parse_frame(golden(name), RECV)
    return p


def test_trade_default_golden():
    p = one("trade_default.json")
    assert p.kind == P.TRADE and p.market == "KRW-BTC"
    assert p.record == {
        "market": "KRW-BTC", "sequential_id": 17477856012000000, "trade_timestamp": 1747785601200,
        "price": 148250000.0, "volume": 0.00134, "ask_bid": "BID", "prev_closing_price": 147000000.0,
        "change": "RISE", "change_price": 1250000.0, "stream_type": "REALTIME", "backfilled": False,
        "received_at": RECV,
    }


def test_trade_simple_golden():
    p = one("trade_simple.json")
    assert p.record == {
        "market": "KRW-BTC", "sequential_id": 1584257228000000, "trade_timestamp": 1584257228000,
        "price": 6759000.0, "volume": 0.03243003, "ask_bid": "ASK", "prev_closing_price": 6823000.0,
        "change": "FALL", "change_price": 64000.0, "stream_type": "SNAPSHOT", "backfilled": False,
        "received_at": RECV,
    }


@pytest.mark.parametrize("name", ["trade_default.json", "ticker_default.json", "orderbook_default.json"])
def test_simple_names_give_the_same_record_as_default(name):
    msg = orjson.loads(golden(name))
    (a,) = P.parse_frame(orjson.dumps(msg), RECV)
    (b,) = P.parse_frame(orjson.dumps(to_simple(msg)), RECV)
    assert a == b


def test_trade_without_optional_fields_2021_style():
    p = one("trade_2021_minimal.json")
    r = p.record
    assert r["market"] == "KRW-ETH"  # upper-cased
    assert r["price"] == 2524300.0  # exponent form
    assert r["volume"] == 1.0 and isinstance(r["volume"], float)
    assert r["prev_closing_price"] is None and r["change"] is None and r["change_price"] is None
    assert r["stream_type"] == "REALTIME"


def test_ticker_default_golden():
    r = one("ticker_default.json").record
    assert r["market"] == "KRW-ETH" and r["timestamp"] == 1747785602050 and r["trade_price"] == 5201000.0
    assert r["acc_trade_price_24h"] == 83000000000.5 and r["trade_timestamp"] == 1747785602000
    assert r["signed_change_rate"] == 0.0040540541 and r["stream_type"] == "REALTIME"


def test_ticker_simple_golden():
    r = one("ticker_simple.json").record
    assert (r["market"], r["trade_price"], r["opening_price"], r["stream_type"]) == ("KRW-XRP", 3412.0, 3400.0,
                                                                                      "SNAPSHOT")
    assert r["acc_trade_volume_24h"] == 1.8e8 and r["timestamp"] == 1747785603011


def test_ticker_missing_optional_fields():
    r = one("ticker_minimal.json").record
    assert r["trade_price"] == 330.5 and r["timestamp"] == 1747785603011
    assert all(r[k] is None for k in ("opening_price", "high_price", "low_price", "change", "acc_trade_price_24h",
                                      "trade_timestamp"))


def test_orderbook_default_golden():
    r = one("orderbook_default.json").record
    assert r["total_ask_size"] == 4.1 and r["level"] == 0.0 and len(r["units"]) == 2
    assert r["units"][0] == {"ask_price": 148260000.0, "bid_price": 148250000.0, "ask_size": 0.1, "bid_size": 0.2}


def test_orderbook_simple_golden():
    r = one("orderbook_simple.json").record
    assert r["timestamp"] == 1584263923870 and r["total_bid_size"] == 622.93769692 and r["level"] is None
    assert r["units"][1] == {"ask_price": 6728000.0, "bid_price": 6719000.0, "ask_size": 1.85862302,
                             "bid_size": 0.00926683}


def test_orderbook_without_totals_sums_units():
    r = one("orderbook_no_totals.json").record
    assert r["total_ask_size"] == 2.0 and r["total_bid_size"] == 3.0 and r["stream_type"] == "REALTIME"


def test_status_and_error_frames():
    assert one("status.json").kind == P.STATUS
    e = one("error.json")
    assert e.kind == P.ERROR and e.detail == "WRONG_FORMAT: Request format is invalid"


@pytest.mark.parametrize("name,stem", [("trade_default.json", "trade"), ("trade_simple.json", "trade"),
                                       ("trade_2021_minimal.json", "trade"), ("ticker_default.json", "ticker"),
                                       ("ticker_minimal.json", "ticker"), ("orderbook_simple.json", "orderbook"),
                                       ("orderbook_no_totals.json", "orderbook")])
def test_records_fit_their_avro_schema(name, stem):
    assert fastavro.validation.validate(one(name).record, schema(stem), raise_errors=True)


def test_list_format_frame_holds_several_messages():
    frame = b"[" + golden("trade_simple.json") + b"," + golden("ticker_minimal.json") + b"]"
    kinds = [p.kind for p in P.parse_frame(frame, RECV)]
    assert kinds == [P.TRADE, P.TICKER]


@pytest.mark.parametrize("frame,reason", [
    (b'{"type":"trade","code":"KRW-BTC","trade_price":', "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b'{"ty":"candle.1s","cd":"KRW-BTC"}', "unknown_type"),
    (b'{"foo":1}', "unknown_frame"),
    (b"42", "not_an_object"),
    (b"[]", "empty_list"),
    (b'{"type":"trade","code":"KRW-BTC","trade_price":1,"trade_volume":1,"ask_bid":"BID","trade_timestamp":1}',
     "missing_field: sequential_id"),
    (b'{"ty":"trade","cd":"KRW-BTC","tp":"abc","tv":1,"ab":"BID","ttms":1,"sid":1}', "bad_field: trade_price"),
    (b'{"ty":"trade","cd":"KRW-BTC","tp":1,"tv":1,"ab":"SELL","ttms":1,"sid":1}', "bad_field: ask_bid"),
    (b'{"ty":"trade","cd":null,"tp":1,"tv":1,"ab":"BID","ttms":1,"sid":1}', "bad_field: code"),
    (b'{"ty":"orderbook","cd":"KRW-BTC","tms":1,"obu":[{"ap":1}]}', "bad_field: bid_price"),
    (b'{"ty":"trade","cd":"KRW-BTC","tp":true,"tv":1,"ab":"BID","ttms":1,"sid":1}', "bad_field: trade_price"),
])
def test_malformed_frames_raise_with_a_reason(frame, reason):
    with pytest.raises(P.FrameError) as e:
        P.parse_frame(frame, RECV)
    assert e.value.reason.startswith(reason)


def test_rest_ticks_become_backfill_trades():
    rows = orjson.loads(golden("rest_ticks.json"))
    recs = [P.parse_rest_trade(r, RECV) for r in rows]
    assert [r["sequential_id"] for r in recs] == [17477856050000002, 17477856040000001]
    assert all(r["stream_type"] == "BACKFILL" and r["backfilled"] for r in recs)
    assert recs[1]["trade_timestamp"] == 1747785604000 and recs[1]["ask_bid"] == "BID"
    assert fastavro.validation.validate(recs[0], schema("trade"), raise_errors=True)


def test_rest_tick_without_side_is_rejected():
    with pytest.raises(P.FrameError):
        P.parse_rest_trade({"market": "KRW-BTC", "timestamp": 1, "sequential_id": 1, "trade_price": 1,
                            "trade_volume": 1}, RECV)


def test_subscribe_request_shape():
    req = orjson.loads(P.subscribe_request("t-1", ["krw-btc", "KRW-ETH"], "SIMPLE", 15))
    assert req[0] == {"ticket": "t-1"} and req[-1] == {"format": "SIMPLE"}
    assert req[1] == {"type": "trade", "codes": ["KRW-BTC", "KRW-ETH"]}
    assert req[3] == {"type": "orderbook", "codes": ["KRW-BTC.15", "KRW-ETH.15"]}


def test_market_of():
    assert P.market_of({"cd": "krw-btc"}) == "KRW-BTC" and P.market_of({"status": "UP"}) is None
