"""The simulator's HTTP/WebSocket surface, served in-process on a free port (no stack needed)."""

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web
from coinpulse_sim_upbit.feed import run_feed
from coinpulse_sim_upbit.hub import Faults, Hub
from coinpulse_sim_upbit.market import MarketGenerator
from coinpulse_sim_upbit.server import SimServer
from coinpulse_testing.net import free_port

pytestmark = pytest.mark.unit


@pytest.fixture
async def sim():
    async def start(faults: Faults | None = None, markets=("KRW-BTC", "KRW-ETH")):
        hub = Hub(faults or Faults(), seed=1)
        hub.markets = list(markets)
        server = SimServer(hub)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return hub, f"http://127.0.0.1:{port}"

    runners = []
    yield start
    for r in runners:
        await r.cleanup()


async def test_subscribe_gets_snapshot_then_realtime_in_the_requested_format(sim):
    hub, url = await sim()
    gen = MarketGenerator(["KRW-BTC"], seed=1, start_ms=1_000_000)
    events = gen.events()
    await run_feed(hub, (next(events) for _ in range(5)), speed=0)
    last_trade = hub.history["KRW-BTC"][-1]
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "/websocket/v1") as ws:
        await ws.send_str('[{"ticket":"t"},{"type":"trade","codes":["KRW-BTC"]},{"format":"SIMPLE"}]')
        snap = orjson.loads((await ws.receive(timeout=5)).data)
        assert snap["st"] == "SNAPSHOT" and snap["sid"] == last_trade["sequential_id"]
        feed = asyncio.create_task(run_feed(hub, events, speed=0, limit=50))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY
        live = orjson.loads(msg.data)
        assert live["ty"] == "trade" and live["st"] == "REALTIME"
        await ws.send_str("PING")
        for _ in range(200):
            m = orjson.loads((await ws.receive(timeout=5)).data)
            if m.get("status") == "UP":
                break
        else:
            pytest.fail("no status frame after PING")
        feed.cancel()


async def test_bad_request_gets_an_error_frame(sim):
    _, url = await sim()
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "/websocket/v1") as ws:
        await ws.send_str('[{"type":"trade","codes":["KRW-BTC"]}]')
        err = orjson.loads((await ws.receive(timeout=5)).data)
        assert err["error"]["name"] == "NO_TICKET"


async def test_disconnect_knob_closes_the_connection(sim):
    hub, url = await sim(Faults(disconnect_every_s=0.2))
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "/websocket/v1") as ws:
        await ws.send_str('[{"ticket":"t"},{"type":"trade","codes":["KRW-BTC"]}]')
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert hub.stats.disconnects_forced == 1


async def test_frame_driven_disconnects_come_after_n_frames_and_hold_the_feed_open(sim):
    # each connection is closed after exactly 7 frames; the feed's limit of 10 frames is reached long before the 3
    # disconnects it must wait for, so it keeps publishing until the third client has been cut off
    hub, url = await sim(Faults(disconnect_every_frames=7, min_disconnects=3))
    gen = MarketGenerator(["KRW-BTC"], seed=4, start_ms=0)
    feed = asyncio.create_task(run_feed(hub, ((t, m) for t, m in gen.events() if m["type"] == "trade"),
                                        speed=0, limit=10))
    got = []
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.ws_connect(url + "/websocket/v1") as ws:
                await ws.send_str('[{"ticket":"t"},{"type":"trade","codes":["KRW-BTC"],"isOnlyRealtime":true}]')
                n = 0
                while True:
                    msg = await ws.receive(timeout=10)
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    n += 1
                got.append(n)
    assert got == [7, 7, 7]
    n = await asyncio.wait_for(feed, 30)
    assert hub.stats.disconnects_forced == 3 and n > 10 and hub.stats.done


async def test_rest_ticks_pages_and_limits(sim):
    hub, url = await sim()
    gen = MarketGenerator(["KRW-BTC"], seed=2, start_ms=0)
    events = gen.events()
    await run_feed(hub, (next(events) for _ in range(40)), speed=0)
    n = len(hub.history["KRW-BTC"])
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-BTC", "count": 5}) as r:
            assert r.status == 200 and r.headers["Remaining-Req"].startswith("group=trade;")
            page = await r.json()
        assert [t["sequential_id"] for t in page] == [t["sequential_id"] for t in hub.history["KRW-BTC"][-5:]][::-1]
        async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-XXX", "count": 5}) as r:
            assert r.status == 404
        async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-BTC", "count": 501}) as r:
            assert r.status == 400
        statuses = []
        for _ in range(12):
            async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-BTC", "count": 1}) as r:
                statuses.append(r.status)
        assert 429 in statuses and 418 in statuses  # over 10/s, then continuing right after a 429
        async with s.get(url + "/sim/trades") as r:
            assert (await r.json())["count"] == n


async def test_rest_429_knob_and_market_lists(sim):
    hub, url = await sim(Faults(rest_429_rate=1.0))
    hub.tickers["KRW-BTC"] = {"trade_price": 1.0, "acc_trade_price_24h": 5.0}
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-BTC", "count": 1}) as r:
            assert r.status == 429
    hub2, url2 = await sim()
    hub2.tickers["KRW-ETH"] = {"trade_price": 2.0, "acc_trade_price_24h": 9.0}
    async with aiohttp.ClientSession() as s:
        async with s.get(url2 + "/v1/market/all", params={"is_details": "true"}) as r:
            assert [m["market"] for m in await r.json()] == ["KRW-BTC", "KRW-ETH"]
        async with s.get(url2 + "/v1/ticker/all", params={"quote_currencies": "KRW"}) as r:
            assert await r.json() == [{"trade_price": 2.0, "acc_trade_price_24h": 9.0, "market": "KRW-ETH"}]


async def test_finish_ends_an_endless_feed(sim):
    hub, url = await sim()
    gen = MarketGenerator(hub.markets, seed=1)
    feed = asyncio.create_task(run_feed(hub, gen.events(), rate=500.0))  # no duration: would run forever
    async with aiohttp.ClientSession() as s:
        deadline = asyncio.get_running_loop().time() + 10
        while hub.stats.frames_published < 50:  # publishing
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert not hub.stats.done
        async with s.post(f"{url}/sim/finish") as r:
            assert (await r.json()) == {"finishing": True}
        n = await asyncio.wait_for(feed, 10)
        async with s.get(f"{url}/sim/stats") as r:
            stats = await r.json()
    assert stats["done"] and stats["frames_published"] == n
