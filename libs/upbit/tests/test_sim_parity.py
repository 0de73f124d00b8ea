"""The simulator's writer and this package's parser agree.

services/sim-upbit writes its frames from its own field tables (`coinpulse_sim_upbit.fields`), on purpose: it is an
independent oracle of the wire format. Here the two copies are held together: the tables are the same, and every
frame the simulator writes (trade, ticker and orderbook, live and snapshot, DEFAULT and SIMPLE names, the shipped
dataset, the `/v1/trades/ticks` pages, the status and error frames) parses with `coinpulse_upbit` to the values
the simulator meant; the frames it sends as deliberate garbage are refused. The values "meant" are read from the
simulator's DEFAULT-named message, the one it builds before it writes any frame.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from coinpulse_sim_upbit import fields as sim_fields
from coinpulse_sim_upbit.feed import run_feed
from coinpulse_sim_upbit.hub import MALFORMED, Hub
from coinpulse_sim_upbit.market import DEFAULT_MARKETS, MarketGenerator
from coinpulse_sim_upbit.recording import generate_recording, read_recording
from coinpulse_sim_upbit.server import STATUS_UP, SimServer, parse_request
from coinpulse_testing.net import free_port
from coinpulse_upbit import fields as F
from coinpulse_upbit import protocol as P

pytestmark = pytest.mark.unit
RECV = 1_747_785_700_000
DATASET = Path(__file__).resolve().parents[3] / "services" / "sim-upbit" / "data" / "default.jsonl.gz"


def meant(msg: dict, stream_type: str | None = None) -> dict:
    """The silver record a simulator message stands for, from its DEFAULT names (`stream_type`: as sent)."""
    st = stream_type or msg.get("stream_type") or "REALTIME"
    ty = msg["type"]
    if ty == "trade":
        return {"market": msg["code"], "sequential_id": msg["sequential_id"], "trade_timestamp": msg["trade_timestamp"],
                "price": msg["trade_price"], "volume": msg["trade_volume"], "ask_bid": msg["ask_bid"],
                "prev_closing_price": msg.get("prev_closing_price"), "change": msg.get("change"),
                "change_price": msg.get("change_price"), "stream_type": st, "backfilled": False, "received_at": RECV}
    if ty == "ticker":
        return {"market": msg["code"], "timestamp": msg["timestamp"], "trade_price": msg["trade_price"],
                **{k: msg.get(k) for k in ("opening_price", "high_price", "low_price", "prev_closing_price", "change",
                                           "signed_change_rate", "trade_volume", "acc_trade_volume_24h",
                                           "acc_trade_price_24h", "trade_timestamp")},
                "stream_type": st, "received_at": RECV}
    assert ty == "orderbook", msg
    return {"market": msg["code"], "timestamp": msg["timestamp"], "total_ask_size": msg["total_ask_size"],
            "total_bid_size": msg["total_bid_size"],
            "units": [{k: u[k] for k in ("ask_price", "bid_price", "ask_size", "bid_size")}
                      for u in msg["orderbook_units"]],
            "level": msg.get("level"), "stream_type": st, "received_at": RECV}


def meant_rest(t: dict) -> dict:
    """The backfill trade a simulator history trade stands for, as `/v1/trades/ticks` serves it (no `change`)."""
    return {"market": t["code"], "sequential_id": t["sequential_id"], "trade_timestamp": t["trade_timestamp"],
            "price": t["trade_price"], "volume": t["trade_volume"], "ask_bid": t["ask_bid"],
            "prev_closing_price": t.get("prev_closing_price"), "change": None, "change_price": t.get("change_price"),
            "stream_type": "BACKFILL", "backfilled": True, "received_at": RECV}


def parsed(data: bytes) -> P.Parsed:
    (p,) = P.parse_frame(data, RECV)
    return p


def check(data: bytes, msg: dict, stream_type: str | None = None) -> str:
    p = parsed(data)
    want = meant(msg, stream_type)
    assert (p.kind, p.market, p.record) == (msg["type"], msg["code"], want), (data[:300], p.record, want)
    for k, v in p.record.items():  # the silver types: ids and times are ints, every other number a float
        if k in ("sequential_id", "trade_timestamp", "timestamp", "received_at"):
            assert type(v) is int, (k, v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            assert type(v) is float, (k, v)
    return p.kind


def test_the_field_tables_are_the_same():
    assert sim_fields.TRADE == F.TRADE_FIELDS
    assert sim_fields.TICKER == F.TICKER_FIELDS
    assert sim_fields.ORDERBOOK == F.ORDERBOOK_FIELDS
    assert sim_fields.UNIT == F.UNIT_FIELDS
    assert sim_fields.BY_TYPE == F.FIELDS
    assert sim_fields.REVERSE == F.DEFAULT_NAMES and sim_fields.UNIT_REVERSE == F.UNIT_DEFAULT_NAMES
    for names in F.FIELDS.values():  # a SIMPLE name stands for one DEFAULT name only
        assert len(set(names.values())) == len(names)


def test_every_frame_the_simulator_publishes_parses_to_what_it_meant():
    gen = MarketGenerator([m[0] for m in DEFAULT_MARKETS], seed=7, start_ms=RECV - 3_600_000, ticker_interval_s=0.5,
                          orderbook_interval_s=2.0)
    hub = Hub(seed=7)
    kinds: Counter = Counter()
    for n, (_, msg) in enumerate(gen.events()):
        if n >= 3000:
            break
        ev = hub.publish(msg["type"], msg["code"], msg)
        for fmt in ("DEFAULT", "SIMPLE"):
            kinds[check(ev.encode(fmt), msg), fmt] += 1
            kinds[check(ev.snapshot(fmt), msg, "SNAPSHOT"), fmt, "snapshot"] += 1
        assert ("type" in orjson.loads(ev.encode("DEFAULT"))) and ("ty" in orjson.loads(ev.encode("SIMPLE")))
    for ty in (P.TRADE, P.TICKER, P.ORDERBOOK):
        for fmt in ("DEFAULT", "SIMPLE"):
            assert kinds[ty, fmt] > 100 and kinds[ty, fmt, "snapshot"] == kinds[ty, fmt], kinds


def test_its_trades_pages_parse_to_the_trades_it_recorded():
    gen = MarketGenerator(["KRW-BTC", "KRW-ETH", "KRW-DOGE"], seed=3, start_ms=RECV - 600_000)
    hub = Hub(seed=3)
    for n, (_, msg) in enumerate(gen.events()):
        if n >= 3000:
            break
        hub.publish(msg["type"], msg["code"], msg)
    pages = 0
    for market, hist in hub.history.items():
        cursor, got = None, []
        while True:  # paged back to the first trade, as the ingester's backfill does
            page = orjson.loads(orjson.dumps(hub.trades_page(market, 200, cursor)))  # the reply's bytes, as served
            if not page:
                break
            got += [P.parse_rest_trade(row, RECV) for row in page]
            cursor, pages = page[-1]["sequential_id"], pages + 1
        assert got == [meant_rest(t) for t in reversed(hist)] and len(got) > 100
    assert pages > 3


@pytest.mark.slow  # every frame of the shipped dataset (42 000)
def test_the_shipped_dataset_and_a_generated_recording_parse_to_what_they_meant(tmp_path):
    rec = tmp_path / "rec.jsonl"
    generate_recording(rec, 0.5, seed=11, markets=["KRW-BTC", "KRW-XRP"], fmt="DEFAULT", ticker_interval_s=1,
                       orderbook_interval_s=5)
    kinds: Counter = Counter()
    for path in (DATASET, rec):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            stored = [orjson.loads(line)["msg"] for line in f if line.strip()]
        replayed = [m for _, m in read_recording(path)]  # the DEFAULT messages the simulator replays
        assert len(stored) == len(replayed) > 100
        for raw, msg in zip(stored, replayed, strict=True):
            kinds[check(orjson.dumps(raw), msg), path.name] += 1  # the names as stored (SIMPLE in the dataset)
            check(orjson.dumps(msg), msg)  # and in the DEFAULT names it replays them with
    assert all(kinds[ty, p.name] for ty in (P.TRADE, P.TICKER, P.ORDERBOOK) for p in (DATASET, rec)), kinds


@pytest.mark.parametrize("frame", MALFORMED)
def test_the_garbage_it_sends_on_purpose_is_refused(frame):
    with pytest.raises(P.FrameError):
        P.parse_frame(frame, RECV)


@pytest.mark.parametrize("fmt", ["DEFAULT", "SIMPLE"])
def test_the_subscribe_request_is_what_the_simulator_understands(fmt):
    subs, got_fmt, rt_only, snap_only = parse_request(P.subscribe_request("t-1", ["krw-btc", "KRW-ETH"], fmt, 15))
    want = {"KRW-BTC", "KRW-ETH"}
    assert subs == {P.TRADE: want, P.TICKER: want, P.ORDERBOOK: want} and got_fmt == fmt
    assert not rt_only and not snap_only


@pytest.mark.parametrize("fmt", ["DEFAULT", "SIMPLE"])
async def test_over_the_wire_its_frames_and_replies_parse_to_what_it_meant(fmt):
    """The served bytes: the simulator's WebSocket (snapshots, live frames, PING's status, a bad request's error) and
    its REST trades page, read by this package's parsers."""
    hub = Hub(seed=5)
    hub.markets = ["KRW-BTC", "KRW-ETH"]
    runner = web.AppRunner(SimServer(hub).app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        events = MarketGenerator(hub.markets, seed=5, start_ms=RECV, orderbook_interval_s=1.0).events()
        first = [next(events)[1] for _ in range(200)]
        await run_feed(hub, ((0, m) for m in first), speed=0)
        latest = {(m["type"], m["code"]): m for m in first}
        async with aiohttp.ClientSession() as s, s.ws_connect(url + "/websocket/v1") as ws:
            await ws.send_bytes(P.subscribe_request("t-1", hub.markets, fmt, 15))
            snaps = [parsed((await ws.receive(timeout=10)).data) for _ in latest]
            assert sorted((p.kind, p.market) for p in snaps) == sorted(latest)
            for p in snaps:
                assert p.record == meant(latest[p.kind, p.market], "SNAPSHOT")
            more = [next(events)[1] for _ in range(100)]
            await run_feed(hub, ((0, m) for m in more), speed=0)
            for msg in more:  # in publish order: no faults configured
                check((await ws.receive(timeout=10)).data, msg)
            await ws.send_str("PING")
            assert (await ws.receive(timeout=10)).data == STATUS_UP and parsed(STATUS_UP).kind == P.STATUS
            await ws.send_str('[{"ticket":"t"},{"type":"candle","codes":["KRW-BTC"]}]')
            err = parsed((await ws.receive(timeout=10)).data)
            assert err.kind == P.ERROR and err.detail.startswith("INVALID_PARAM: ")
            async with s.get(url + "/v1/trades/ticks", params={"market": "KRW-ETH", "count": "50"}) as r:
                assert r.status == 200
                rows = orjson.loads(await r.read())
        want = [meant_rest(t) for t in reversed(hub.history["KRW-ETH"])][:50]
        assert [P.parse_rest_trade(row, RECV) for row in rows] == want and len(want) > 10
    finally:
        await runner.cleanup()
