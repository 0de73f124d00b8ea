"""Example-based tests of the candle rules (one behaviour each)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.engine import CandleEngine
from coinpulse_candle_agent.trades import BadTrade, Trade, trade_from_record

pytestmark = pytest.mark.unit

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 3_600_000  # an hour boundary


def trade(seq: int, ts: int, price: float = 100.0, volume: float = 1.0, bid: bool = True, market: str = "KRW-BTC"):
    return Trade(market, seq, ts, price, volume, bid)


def test_candle_is_emitted_once_event_time_passes_end_plus_grace():
    eng = CandleEngine(Timing(5_000, 600_000))
    assert eng.add(trade(1, T0 + 1_000)).emits == []
    assert eng.add(trade(2, T0 + 64_999)).emits == []
    emits = eng.add(trade(3, T0 + 65_000)).emits
    assert [(e["interval"], e["bucket_start"], e["revision"], e["trade_count"]) for e in emits] == [
        ("1m", T0, 0, 1)
    ]


def test_open_close_follow_trade_time_then_sequential_id_not_arrival():
    eng = CandleEngine(Timing(0, 60_000))
    for seq, ts, price in [(5, T0 + 10, 3.0), (4, T0 + 10, 2.0), (9, T0 + 5, 1.0), (7, T0 + 50, 4.0)]:
        eng.add(trade(seq, ts, price))
    (c,) = [e for e in eng.advance(T0 + 60_000) if e["interval"] == "1m"]
    assert (c["open"], c["close"], c["high"], c["low"]) == (1.0, 4.0, 4.0, 1.0)
    assert (c["first_trade_at"], c["last_trade_at"]) == (T0 + 5, T0 + 50)


def test_volumes_split_by_side_and_vwap():
    eng = CandleEngine(Timing(0, 60_000))
    eng.add(trade(1, T0, 10.0, 2.0, bid=True))
    eng.add(trade(2, T0 + 1, 20.0, 1.0, bid=False))
    (c,) = [e for e in eng.advance(T0 + 60_000) if e["interval"] == "1m"]
    assert (c["volume"], c["quote_volume"], c["buy_volume"], c["sell_volume"]) == (3.0, 40.0, 2.0, 1.0)
    assert c["vwap"] == pytest.approx(40.0 / 3.0)


def test_duplicate_trade_is_ignored():
    eng = CandleEngine(Timing(0, 60_000))
    eng.add(trade(1, T0))
    assert eng.add(trade(1, T0)).status == "dup"
    (c,) = [e for e in eng.advance(T0 + 60_000) if e["interval"] == "1m"]
    assert c["trade_count"] == 1


def test_late_trade_within_lateness_revises_candle_and_rollups():
    eng = CandleEngine(Timing(1_000, 4_000_000))
    eng.add(trade(1, T0 + 1_000))
    eng.advance(T0 + 3_600_000 + 1_000)  # closes the minute, its 5m and its 1h
    out = eng.add(trade(2, T0 + 2_000, price=200.0))
    assert out.status == "ok"
    assert sorted((e["interval"], e["revision"], e["high"]) for e in out.emits) == [
        ("1h", 1, 200.0), ("1m", 1, 200.0), ("5m", 1, 200.0)
    ]


def test_trade_beyond_lateness_is_late_and_changes_nothing():
    eng = CandleEngine(Timing(1_000, 120_000))
    eng.add(trade(1, T0 + 1_000))
    eng.advance(T0 + 180_000)
    out = eng.add(trade(2, T0 + 2_000))
    assert out == ("late", [])
    assert eng.late == 1


def test_idle_market_closes_on_timer_advance():
    eng = CandleEngine(Timing(5_000, 600_000))
    eng.add(trade(1, T0 + 1_000))
    assert [e["interval"] for e in eng.advance(T0 + 65_000)] == ["1m"]


def test_minute_without_trades_has_no_candle():
    eng = CandleEngine(Timing(0, 600_000))
    eng.add(trade(1, T0 + 1_000))
    eng.add(trade(2, T0 + 180_000))
    minutes = [e["bucket_start"] for e in eng.advance(T0 + 240_000) if e["interval"] == "1m"]
    assert T0 + 60_000 not in minutes and T0 + 120_000 not in minutes


def test_expired_buckets_are_deleted_from_state():
    eng = CandleEngine(Timing(0, 60_000))
    eng.add(trade(1, T0))
    eng.take_changes()
    eng.advance(T0 + 2 * 3_600_000)
    changes = dict(eng.take_changes())
    assert changes["1m|KRW-BTC|" + str(T0)] is None
    assert eng.open_buckets() == 0


def test_lateness_shorter_than_grace_is_rejected():
    with pytest.raises(ValueError):
        Timing(10_000, 5_000)


def test_trade_record_parses_datetime_timestamps_exactly():
    rec = {"market": "KRW-BTC", "sequential_id": 7, "price": 1.5, "volume": 2.0, "ask_bid": "ASK",
           "trade_timestamp": datetime(2026, 11, 23, 1, 2, 3, 457000, tzinfo=UTC)}
    t = trade_from_record(rec)
    assert t.ts == 1_795_395_723_457 and t.bid is False


@pytest.mark.parametrize("field,value", [("price", 0.0), ("volume", float("nan")), ("ask_bid", "X"),
                                         ("market", ""), ("sequential_id", "1")])
def test_bad_trade_record_is_rejected_with_reason(field, value):
    rec = {"market": "KRW-BTC", "sequential_id": 7, "price": 1.5, "volume": 2.0, "ask_bid": "ASK",
           "trade_timestamp": 1}
    rec[field] = value
    with pytest.raises(BadTrade):
        trade_from_record(rec)
