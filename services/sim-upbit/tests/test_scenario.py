"""Scenario mode: sim-upbit's trades are the shared world's (their 1-minute candles carry its returns), and the
REST past and the live feed are one consistent series of trades."""

import asyncio
import itertools
import math

import aiohttp
import pytest
from aiohttp import web
from coinpulse_sim_upbit.__main__ import parse_args
from coinpulse_sim_upbit.feed import run_feed
from coinpulse_sim_upbit.hub import Faults, Hub
from coinpulse_sim_upbit.market import krw_tick as sim_tick
from coinpulse_sim_upbit.scenario import ScenarioMarket
from coinpulse_sim_upbit.server import SimServer
from coinpulse_simworld import MINUTE_MS, World, krw_tick, load_scenario, minute_trades
from coinpulse_testing.net import free_port

pytestmark = pytest.mark.unit

SC = load_scenario("default")
T0 = 1_764_666_000_000 + 12_345  # 2025-12-02T09:00:12.345Z: the feed starts inside a minute
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-ADA"]


def market(history_hours: float = 0.5, codes=MARKETS) -> ScenarioMarket:
    return ScenarioMarket(World(SC.subset(codes)), history_hours=history_hours, clock=lambda: T0)


def take_until(sm: ScenarioMarket, end_ms: int) -> list[tuple[int, dict]]:
    out = []
    for t, m in sm.events():
        if t >= end_ms:
            return out
        out.append((t, m))


def candles(trades: list[dict]) -> dict[tuple[str, int], float]:
    """market, minute -> close (the minute's last trade by time, then id)."""
    last: dict[tuple[str, int], tuple[int, int, float]] = {}
    for m in trades:
        key = (m["code"], m["trade_timestamp"] // MINUTE_MS)
        v = (m["trade_timestamp"], m["sequential_id"], m["trade_price"])
        if key not in last or v > last[key]:
            last[key] = v
    return {k: v[2] for k, v in last.items()}


def test_the_tick_grid_is_the_simulators_own():
    for p in (0.5, 3, 50, 330, 1050, 22_000, 240_000, 560_000, 1_500_000, 140_000_000):
        assert krw_tick(p) == sim_tick(p)


def test_live_trades_aggregated_into_1m_candles_carry_the_world_returns():
    sm = market()
    evs = take_until(sm, T0 + 20 * MINUTE_MS)
    times = [t for t, _ in evs]
    assert times == sorted(times) and times[0] >= T0
    kinds = {m["type"] for _, m in evs}
    assert kinds == {"trade", "ticker", "orderbook"}
    trades = [m for _, m in evs if m["type"] == "trade"]
    closes = candles(trades)
    w = sm.world
    first = T0 // MINUTE_MS + 1  # the first whole minute
    checked = 0
    for code in MARKETS:
        sids = [m["sequential_id"] for m in trades if m["code"] == code]
        assert sids == sorted(set(sids)), "ids rise strictly per market"
        for minute in range(first + 1, T0 // MINUTE_MS + 20):
            r = math.log(closes[(code, minute)] / closes[(code, minute - 1)])
            assert abs(r - w.ret(code, minute)) < 1e-9, (code, minute)
            checked += 1
    assert checked == len(MARKETS) * 18
    for _, m in evs:
        if m["type"] == "trade":
            assert m["trade_timestamp"] < m["timestamp"] and m["trade_price"] > 0 and m["trade_volume"] > 0


def test_two_simulators_started_apart_serve_the_same_trades():
    a = [m for _, m in take_until(market(), T0 + 3 * MINUTE_MS) if m["type"] == "trade"]
    later = ScenarioMarket(World(SC.subset(MARKETS)), clock=lambda: T0 + MINUTE_MS)
    b = [m for _, m in take_until(later, T0 + 3 * MINUTE_MS) if m["type"] == "trade"]
    tail = [m for m in a if m["trade_timestamp"] >= T0 + MINUTE_MS]
    assert b == tail and len(b) > 100


def page_all(hub: Hub, code: str, count: int) -> list[dict]:
    out, cursor = [], None
    while True:
        page = hub.trades_page(code, count, cursor)
        assert page is not None
        if not page:
            return out
        out.extend(page)
        cursor = page[-1]["sequential_id"]


async def test_rest_pages_go_from_the_live_feed_back_through_the_history_without_gap_or_repeat():
    sm = market(history_hours=0.25)
    hub = Hub(Faults(), seed=1)
    hub.markets = list(sm.codes)
    hub.past = sm.past_trades
    before = page_all(hub, "KRW-XRP", 200)  # before the feed started: the past up to now
    feed = sm.events()
    await run_feed(hub, itertools.takewhile(lambda e: e[0] < T0 + 2 * MINUTE_MS, feed), speed=0)
    published = {m["sequential_id"] for m in hub.history["KRW-XRP"]}
    for code in ("KRW-XRP", "KRW-BTC"):
        got = page_all(hub, code, 500 if code == "KRW-BTC" else 137)
        sids = [t["sequential_id"] for t in got]
        assert sids == sorted(sids, reverse=True) and len(set(sids)) == len(sids)
        # exactly the world's trades from the history start to the last one published
        start_ms = T0 - 15 * MINUTE_MS
        expect = [t for minute in range(start_ms // MINUTE_MS, (T0 + 2 * MINUTE_MS) // MINUTE_MS + 1)
                  for t in minute_trades(sm.world, code, minute) if start_ms <= t.ts_ms < T0 + 2 * MINUTE_MS]
        assert sids == [t.sid for t in reversed(expect)]
        assert [t["trade_price"] for t in got] == [t.price for t in reversed(expect)]
        assert set(got[0]) == {"market", "trade_date_utc", "trade_time_utc", "timestamp", "trade_price",
                               "trade_volume", "prev_closing_price", "change_price", "ask_bid", "sequential_id"}
    assert {t["sequential_id"] for t in before} <= {t.sid for t in minute_trades(sm.world, "KRW-XRP", T0 // MINUTE_MS)} | {
        t["sequential_id"] for t in page_all(hub, "KRW-XRP", 500)}
    assert max(t["timestamp"] for t in before) < T0 and not published & {t["sequential_id"] for t in before}
    # a cursor inside the past pages on from there
    mid = page_all(hub, "KRW-XRP", 500)[400]["sequential_id"]
    nxt = hub.trades_page("KRW-XRP", 3, mid)
    assert all(t["sequential_id"] < mid for t in nxt) and len(nxt) == 3
    assert hub.trades_page("KRW-NOPE", 3, None) is None


async def test_rest_serves_the_scenario_history_over_http():
    sm = market(history_hours=1, codes=["KRW-ETH", "KRW-SOL"])
    hub = Hub(Faults(), seed=1)
    hub.markets = list(sm.codes)
    hub.tickers.update(sm.initial_tickers())
    hub.past = sm.past_trades
    runner = web.AppRunner(SimServer(hub).app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/v1/trades/ticks", params={"market": "KRW-ETH", "count": 50}) as r:
                assert r.status == 200
                page = await r.json()
            assert len(page) == 50 and all(t["timestamp"] < T0 for t in page)
            async with s.get(f"http://127.0.0.1:{port}/v1/ticker/all") as r:
                rows = {x["market"]: x for x in await r.json()}
            assert set(rows) == {"KRW-ETH", "KRW-SOL"}
            assert rows["KRW-ETH"]["acc_trade_price_24h"] > rows["KRW-SOL"]["acc_trade_price_24h"] > 0
            assert rows["KRW-ETH"]["trade_price"] == sm.world.close("KRW-ETH", T0 // MINUTE_MS - 1)
    finally:
        await runner.cleanup()


async def test_wall_clock_pacing_never_publishes_ahead_of_the_event_time():
    import time

    now = int(time.time() * 1000)
    sm = ScenarioMarket(World(SC.subset(["KRW-BTC"])), clock=lambda: now)
    hub = Hub(Faults(), seed=1)
    late = []
    orig = hub.publish

    def publish(kind, market, msg):
        if kind == "trade":
            late.append(time.time() * 1000 - msg["trade_timestamp"])
        return orig(kind, market, msg)

    hub.publish = publish
    await asyncio.wait_for(run_feed(hub, sm.events(), speed=1, duration_s=1.5, wall_clock=True), 30)
    assert len(late) > 1 and min(late) >= -1.0, "a trade was published before its time"


@pytest.mark.parametrize("argv", [["--scenario", "default", "--recording", "default"], ["--history-hours", "3"]])
def test_conflicting_options_are_refused(argv):
    from coinpulse_sim_upbit.__main__ import main

    with pytest.raises(SystemExit):
        main(argv)


def test_scenario_options_parse():
    a = parse_args(["--scenario", "default", "--history-hours", "24"])
    assert a.scenario == "default" and a.history_hours == 24
