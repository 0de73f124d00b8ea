"""The rewinder replays a dead letter at most once: a record that is corrupt behind a schema id the registry knows
fails in Connect's converter like a record read during a registry outage, is replayed once, fails again and stays a
dead letter, also after the sink restarts. Real Connect, registry and PostgreSQL; an isolated namespace."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from coinpulse_sink.service import SinkService
from coinpulse_testing.wait import wait_for

from .conftest import candle_sink, now_ms

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _candle(market, bucket, revision):
    return {"market": market, "interval": "1m", "bucket_start": bucket, "open": 1.0, "high": 2.0, "low": 0.5,
            "close": 1.0 + revision, "volume": 3.0, "quote_volume": 4.0, "vwap": 4 / 3, "trade_count": 3 + revision,
            "buy_volume": 1.0, "sell_volume": 2.0, "first_trade_at": bucket, "last_trade_at": bucket + 1,
            "revision": revision, "emitted_at": bucket + 61_000}


def _metric(svc: SinkService, name: str, labels: dict | None = None) -> float:
    return svc.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def _rewind_by_hand(connect: str, name: str, topic: str, offset: int) -> None:
    """What an operator (or a rewind that crashed before its ledger write) does: Connect reads `offset` again."""
    httpx.put(f"{connect}/connectors/{name}/stop", timeout=30).raise_for_status()
    wait_for(lambda: httpx.get(f"{connect}/connectors/{name}/status", timeout=30).json()["connector"]["state"]
             == "STOPPED", 60, f"{name} stopped")
    body = {"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0},
                         "offset": {"kafka_offset": offset}}]}
    wait_for(lambda: httpx.patch(f"{connect}/connectors/{name}/offsets", json=body, timeout=30).status_code < 400,
             60, f"{name} offsets patched")
    httpx.put(f"{connect}/connectors/{name}/resume", timeout=30).raise_for_status()


def test_a_corrupt_record_behind_a_known_schema_id_is_replayed_once_also_across_a_restart(namespace):
    ns = namespace
    t0 = now_ms() - 3_600_000
    minute = t0 - t0 % 60_000
    topic = ns.topic("candle.1m")
    name = f"{ns.ns}-coinpulse-gold-candles"
    good = ns.codec("candle.1m").encode(_candle("KRW-BTC", minute, 0))
    corrupt = good[:5] + b"\xff" * 12  # the wire format and a schema id the registry resolves, then garbage
    for k in range(5):
        ns.send("candle.1m", f"KRW-BTC|{minute + k * 60_000}", _candle("KRW-BTC", minute + k * 60_000, 0))
    ns.send_raw("candle.1m", "KRW-BTC|corrupt", corrupt)  # offset 5
    ns.send("candle.1m", f"KRW-BTC|{minute + 5 * 60_000}", _candle("KRW-BTC", minute + 5 * 60_000, 0))
    ns.flush()

    def landed() -> bool:
        return ns.rows("SELECT count(*) FROM {gold}.candles")[0][0] == 6

    svc = candle_sink(ns)
    try:
        wait_for(lambda: landed() and ns.dead_letters() >= 2 and
                 _metric(svc, "coinpulse_sink_connect_dead_letters_kept_total") >= 1, 180,
                 lambda: f"the replayed corrupt record kept: {ns.dead_letters()} dead letters, health "
                         f"{json.dumps(svc.health())[:1200]}")
        time.sleep(8)  # several more ticks: a rewinder without a memory would rewind on each of them
        assert _metric(svc, "coinpulse_sink_connect_rewinds_total", {"connector": name}) == 1
        assert ns.dead_letters() == 2  # the first failure and the one replay, no more
        assert landed()
    finally:
        svc.shutdown()

    svc = candle_sink(ns)  # a restart: a fresh process knows only what the ledger remembers
    try:
        wait_for(lambda: svc.supervisor.healthy, 60, lambda: json.dumps(svc.supervisor.health())[:1200])
        _rewind_by_hand(ns.settings.connect, name, topic, 5)  # the corrupt record is dead-lettered a third time
        wait_for(lambda: ns.dead_letters() >= 3 and _metric(svc, "coinpulse_sink_connect_dead_letters_kept_total")
                 >= 1, 120, lambda: f"the third dead letter kept: {ns.dead_letters()} dead letters")
        time.sleep(8)
        assert _metric(svc, "coinpulse_sink_connect_rewinds_total", {"connector": name}) == 0
        assert ns.dead_letters() == 3 and landed()
    finally:
        svc.shutdown()
