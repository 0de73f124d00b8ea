"""History from the start (COINPULSE_INGEST_HISTORY_HOURS): the ingest pages the simulator's scenario past over
`/v1/trades/ticks` before subscribing, produces it oldest first across markets (the candle agent's event time is
per partition, markets share partitions), exactly the world's trades of those hours, within the REST rate limit;
a restart (dedupe seeded from what the topic holds) pages only its downtime.

The simulator is the real one (scenario mode, in this process, with a clock the test sets); Kafka and the registry
are in-memory stand-ins (no stack)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from coinpulse_common.avro import schema_text
from coinpulse_ingest_upbit.backfill import history_plan
from coinpulse_ingest_upbit.service import UpbitIngest
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_sim_upbit.hub import Faults, Hub
from coinpulse_sim_upbit.scenario import ScenarioMarket
from coinpulse_sim_upbit.server import SimServer
from coinpulse_simworld import MINUTE_MS, World, load_scenario, minute_trades
from coinpulse_testing.kafka import MemoryProducer
from coinpulse_testing.net import free_port
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from pydantic import ValidationError

pytestmark = pytest.mark.unit

CODES = ["KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-ADA"]
T0 = 1_764_666_000_000 + 12_345  # 2025-12-02T09:00:12.345Z
HOURS = 1.5


def world_trades(world: World, lo_ms: int, hi_ms: int) -> set[tuple[str, int]]:
    """(market, sequential_id) of the world's trades with lo <= time < hi."""
    out = set()
    for code in CODES:
        for m in range(lo_ms // MINUTE_MS, hi_ms // MINUTE_MS + 1):
            out |= {(code, t.sid) for t in minute_trades(world, code, m) if lo_ms <= t.ts_ms < hi_ms}
    return out


def make_ingest(rest_url: str, hours: float = HOURS) -> tuple[UpbitIngest, MemoryProducer]:
    reg = SchemaRegistryClient.new_client({"url": "mock://history"})
    s = IngestSettings(markets=",".join(CODES), kafka_bootstrap="127.0.0.1:1", upbit_rest_url=rest_url,
                       ingest_history_hours=hours, trade_topic="unit.trade", ticker_topic="unit.ticker",
                       orderbook_topic="unit.orderbook", raw_topic="unit.raw", dlq_topic="unit.dlq")
    for stem, topic in (("trade", s.trade_topic), ("ticker", s.ticker_topic), ("orderbook", s.orderbook_topic),
                        ("raw_frame", s.raw_topic), ("dead_letter", s.dlq_topic)):
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    prod = MemoryProducer()
    return UpbitIngest(s, producer_=prod, registry=reg), prod


def trades_of(svc: UpbitIngest, prod: MemoryProducer) -> list[dict]:
    return [svc.enc_trade.decode(v) for t, _, v in prod.records if t == svc.s.trade_topic]


def ms(v) -> int:
    return v if isinstance(v, int) else int(v.timestamp() * 1000)


async def test_history_comes_oldest_first_exactly_the_worlds_hours_and_a_restart_pages_only_its_downtime():
    world = World(load_scenario("demo").subset(CODES))
    clock = [T0]
    sm = ScenarioMarket(world, history_hours=3.0, clock=lambda: clock[0])  # the simulator has more than asked
    hub = Hub(Faults())
    hub.markets, hub.past = list(sm.codes), sm.past_trades
    port = free_port()
    runner = web.AppRunner(SimServer(hub).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        svc, prod = make_ingest(f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as http:
            svc.http = http
            n = await svc.history(now_ms=T0)
        got = trades_of(svc, prod)
        times = [ms(r["trade_timestamp"]) for r in got]
        # one series in trade-time order across every market, as the candle agent's event time needs it
        assert times == sorted(times)
        floor = T0 - int(HOURS * 3_600_000)
        assert {(r["market"], r["sequential_id"]) for r in got} == world_trades(world, floor, T0)
        assert len(got) == n == svc.stats.history_trades > 1000, n
        assert all(r["stream_type"] == "BACKFILL" and r["backfilled"] for r in got)
        # within the rate limit: Remaining-Req honoured, never a 429 (or the 418 that follows one)
        assert hub.stats.rest_429 == 0 and hub.stats.rest_418 == 0 and svc.stats.rest_throttled == 0
        pages = svc.stats.backfill_requests
        assert pages >= len(got) / 500
        raw = [svc.enc_raw.decode(v) for t, _, v in prod.records if t == svc.s.raw_topic]
        assert len(raw) == pages and all(r["source"] == "upbit.rest" for r in raw)

        # a restart 10 minutes later: its dedupe knows what the topic holds (seed_from_kafka), so it pages back only
        # to each market's last trade (minus the margin): one page per market, the downtime's trades, none twice
        clock[0] = T0 + 10 * MINUTE_MS
        svc2, prod2 = make_ingest(f"http://127.0.0.1:{port}")
        for r in got:
            svc2.dedupe.add(r["market"], r["sequential_id"], ms(r["trade_timestamp"]))
        async with aiohttp.ClientSession() as http:
            svc2.http = http
            n2 = await svc2.history(now_ms=clock[0])
        got2 = trades_of(svc2, prod2)
        assert {(r["market"], r["sequential_id"]) for r in got2} == world_trades(world, T0, clock[0])
        assert n2 == len(got2) > 0
        assert svc2.stats.backfill_requests == len(CODES)
        times2 = [ms(r["trade_timestamp"]) for r in got2]
        assert times2 == sorted(times2) and times2[0] >= T0
    finally:
        await runner.cleanup()


async def test_history_is_off_by_default():
    svc, prod = make_ingest("http://127.0.0.1:1", hours=0.0)  # nothing listens there: no request may be made
    assert await svc.history() == 0
    assert prod.records == [] and svc.stats.backfill_requests == 0


def test_the_history_plan_stops_at_the_floor_or_at_the_watermark_whichever_is_later():
    now, h = 10_000_000, 1.0
    floor = now - 3_600_000
    assert history_plan("KRW-BTC", None, now, h).stop_before_ms == floor  # never seen: the whole history
    assert history_plan("KRW-BTC", floor - 5_000_000, now, h).stop_before_ms == floor  # seen long ago: bounded
    wm = now - 120_000
    assert history_plan("KRW-BTC", wm, now, h, margin_ms=60_000).stop_before_ms == wm - 60_000  # the gap only


@pytest.mark.parametrize("hours", [-1, 169])
def test_history_hours_out_of_range_is_refused_with_the_variable_named(hours):
    with pytest.raises(ValidationError, match="COINPULSE_INGEST_HISTORY_HOURS"):
        IngestSettings(ingest_history_hours=hours)
