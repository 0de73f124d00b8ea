import random

import pytest
from coinpulse_ingest_upbit.backfill import (
    BackfillPlan,
    delay_before_next,
    parse_remaining_req,
    reconnect_delay,
)
from coinpulse_ingest_upbit.dedupe import TradeDeduper
from coinpulse_ingest_upbit.markets import parse_market_list, select_top_n
from coinpulse_ingest_upbit.settings import IngestSettings

pytestmark = pytest.mark.unit


# --- dedupe -----------------------------------------------------------------------------------------------------
def test_same_sid_on_two_markets_is_two_trades():
    d = TradeDeduper()
    assert d.add("KRW-BTC", 7, 1000) and d.add("KRW-ETH", 7, 1000)


def test_repeat_of_a_trade_is_a_duplicate():
    d = TradeDeduper()
    assert d.add("KRW-BTC", 7, 1000)
    assert not d.add("KRW-BTC", 7, 1000)


def test_watermark_is_the_latest_trade_time_even_out_of_order():
    d = TradeDeduper()
    d.add("KRW-BTC", 2, 2000)
    d.add("KRW-BTC", 1, 1000)
    assert d.watermark("KRW-BTC") == 2000 and d.watermark("KRW-ETH") is None


def test_capacity_evicts_oldest_ids():
    d = TradeDeduper(capacity_per_market=3)
    for sid in range(5):
        d.add("M", sid, sid)
    assert d.size("M") == 3 and not d.seen("M", 0) and d.seen("M", 4)


def test_forget_lets_a_refused_trade_come_back():
    d = TradeDeduper()
    d.add("M", 1, 1)
    d.forget("M", 1)
    assert d.add("M", 1, 1)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        TradeDeduper(0)


# --- backfill plan ----------------------------------------------------------------------------------------------
def page(sids_ts):
    return [{"sequential_id": s, "trade_timestamp": t} for s, t in sids_ts]


def test_plan_stops_once_a_page_reaches_behind_the_watermark():
    plan = BackfillPlan("KRW-BTC", watermark_ms=100_000, margin_ms=10_000, count=3)
    assert plan.params() == {"market": "KRW-BTC", "count": 3}
    plan.absorb(page([(30, 130_000), (29, 120_000), (28, 110_000)]))
    assert not plan.done and plan.params()["cursor"] == 28
    plan.absorb(page([(27, 95_000), (26, 89_000), (25, 80_000)]))
    assert plan.done and not plan.truncated and plan.pages == 2


def test_plan_stops_on_a_short_or_empty_page():
    plan = BackfillPlan("M", watermark_ms=0, count=3)
    plan.absorb(page([(5, 10_000_000), (4, 9_999_999)]))
    assert plan.done
    plan2 = BackfillPlan("M", watermark_ms=0, count=3)
    plan2.absorb([])
    assert plan2.done


def test_plan_for_an_unseen_market_goes_back_the_initial_window():
    plan = BackfillPlan("M", watermark_ms=None, initial_ms=60_000, count=2)
    plan.absorb(page([(9, 200_000), (8, 170_000)]))
    assert plan.stop_before_ms == 140_000 and not plan.done
    plan.absorb(page([(7, 150_000), (6, 139_000)]))
    assert plan.done


def test_plan_is_truncated_at_max_pages():
    plan = BackfillPlan("M", watermark_ms=0, count=1, max_pages=2)
    plan.absorb(page([(9, 200_000)]))
    plan.absorb(page([(8, 190_000)]))
    assert plan.done and plan.truncated


def test_plan_cursor_follows_the_order_returned_not_the_smallest_sid():
    plan = BackfillPlan("M", watermark_ms=0, count=2)
    plan.absorb(page([(3, 200_000), (5, 199_000)]))  # sid order is not trade order
    assert plan.cursor == 5


# --- rate limits ------------------------------------------------------------------------------------------------
def test_parse_remaining_req():
    r = parse_remaining_req("group=trade; min=1799; sec=9")
    assert (r.group, r.min, r.sec) == ("trade", 1799, 9)
    assert parse_remaining_req(None) is None and parse_remaining_req("garbage") is None


def test_exhausted_second_waits_for_the_next():
    assert delay_before_next(200, parse_remaining_req("group=trade; min=10; sec=0"), 1) == 1.0
    assert delay_before_next(200, parse_remaining_req("group=trade; min=10; sec=4"), 1) == 0.0


def test_429_backs_off_exponentially_and_418_waits_long():
    rng = random.Random(1)
    d1, d3 = delay_before_next(429, None, 1, rng=rng), delay_before_next(429, None, 3, rng=rng)
    assert 0.6 <= d1 < d3 <= 12.5
    assert delay_before_next(418, None, 1) >= 30.0
    assert delay_before_next(418, None, 1, retry_after=5.0) == 5.0


def test_reconnect_delay_grows_is_jittered_and_capped():
    rng = random.Random(7)
    ds = [reconnect_delay(a, 0.5, 8.0, rng) for a in range(1, 10)]
    assert all(0.2 <= d <= 8.0 for d in ds) and ds[-1] >= 4.0 and ds[0] <= 0.5


# --- markets and settings ---------------------------------------------------------------------------------------
def test_parse_market_list():
    assert parse_market_list(" krw-btc,KRW-ETH,,KRW-BTC ") == ["KRW-BTC", "KRW-ETH"]


def test_select_top_n_by_24h_value_krw_only():
    tickers = [{"market": "KRW-A", "acc_trade_price_24h": 5}, {"market": "BTC-B", "acc_trade_price_24h": 99},
               {"market": "KRW-C", "acc_trade_price_24h": 7.5}, {"market": "KRW-D", "acc_trade_price_24h": 1},
               {"market": "KRW-E"}]
    assert select_top_n(tickers, 2) == ["KRW-C", "KRW-A"]


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("COINPULSE_INGEST_MARKETS", "krw-btc,krw-eth")
    monkeypatch.setenv("COINPULSE_INGEST_UPBIT_WS_URL", "ws://127.0.0.1:1/websocket/v1")
    s = IngestSettings()
    assert s.market_list() == ["KRW-BTC", "KRW-ETH"] and s.upbit_ws_url.startswith("ws://127.0.0.1")
    assert s.ingest_metrics_port == 28101
    assert all(f.description for f in IngestSettings.model_fields.values())
