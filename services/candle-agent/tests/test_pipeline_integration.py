"""A simulator recording replayed through ingest-upbit and the candle agent: candle.1m equals the reference
computed from the recording's unique trades, minute by minute, all markets (duplicates, reordering and forced
disconnects with gap backfill on the way)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from coinpulse_common import topics
from coinpulse_common.avro import registry_client, schema_text
from coinpulse_common.kafka import admin
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn_python, stop_all
from coinpulse_testing.reference import reference_candles, sim_trades
from coinpulse_testing.sandbox import TopicReader, wait_for_candles
from coinpulse_testing.wait import wait_for
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARKETS = "KRW-BTC,KRW-ETH,KRW-XRP,KRW-DOGE"


def test_recording_through_ingest_and_agent_equals_reference(stack, topic_set, agents, unique, tmp_path):
    extra = {"ticker": f"it-pipe-{unique}.ticker", "orderbook": f"it-pipe-{unique}.orderbook",
             "raw_frame": f"it-pipe-{unique}.raw", "dead_letter": f"it-pipe-{unique}.dlq-ingest"}
    a = admin(stack)
    for f in a.create_topics([NewTopic(t, 3, 1) for t in extra.values()]).values():
        f.result(30)
    for stem, t in extra.items():
        registry_client(stack.registry).register_schema(f"{t}-value", Schema(schema_text(stem), "AVRO"))

    rec = tmp_path / "rec.jsonl"
    subprocess.run([sys.executable, "-m", "coinpulse_sim_upbit", "--generate-recording", str(rec), "--minutes", "4",
                    "--markets", MARKETS, "--seed", "5"], check=True, capture_output=True, timeout=120)
    sim_port, metrics_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = spawn_python(["-m", "coinpulse_sim_upbit", "--recording", str(rec), "--keep-times", "--rate", "400",
                        "--wait-clients", "--port", str(sim_port), "--seed", "9", "--duplicate-rate", "0.03",
                        "--reorder-window", "4", "--disconnect-every", "4"], tmp_path / "sim.log")
    env = dict(os.environ, COINPULSE_INGEST_UPBIT_WS_URL=f"ws://127.0.0.1:{sim_port}/websocket/v1",
               COINPULSE_INGEST_UPBIT_REST_URL=sim_url, COINPULSE_INGEST_MARKETS=MARKETS,
               COINPULSE_INGEST_METRICS_PORT=str(metrics_port), COINPULSE_INGEST_RECONNECT_BASE_S="0.3",
               COINPULSE_INGEST_TRADE_TOPIC=topic_set.topic("trade"), COINPULSE_INGEST_TICKER_TOPIC=extra["ticker"],
               COINPULSE_INGEST_ORDERBOOK_TOPIC=extra["orderbook"], COINPULSE_INGEST_RAW_TOPIC=extra["raw_frame"],
               COINPULSE_INGEST_DLQ_TOPIC=extra["dead_letter"])
    ingest = None
    try:
        wait_for(lambda: get_json(sim_url + "/sim/stats") is not None, 20, "the simulator to start", 0.5)
        ingest = spawn_python(["-m", "coinpulse_ingest_upbit"], tmp_path / "ingest.log", env)
        agent = agents(grace_ms=2_000, idle_after_ms=1_000, mentions="false").start()
        wait_for(lambda: (get_json(sim_url + "/sim/stats") or {}).get("done"), 120, "the replay to finish", 0.5)
        history = get_json(sim_url + "/sim/trades")["trades"]
        trades = sim_trades(history)
        assert len(trades) > 200
        want = {topics.gold_key(m, b).encode(): c
                for (_, m, b), c in reference_candles(trades, intervals=("1m",)).items()}
        reader = TopicReader(stack, topic_set.topic("1m"), topics.CANDLE_1M, 3)
        wait_for_candles(reader, want, 120, alive=lambda: agent.poll() is None)
        assert set(reader.last) == set(want)
        assert get_json(sim_url + "/sim/stats")["duplicates_sent"] > 0
        reader.close()
    finally:
        stop_all([p for p in (ingest, sim) if p is not None], 20)
