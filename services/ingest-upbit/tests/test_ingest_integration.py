"""End to end: the simulator (disconnects, duplicates, reordering, malformed frames, 429s) → ingest → Kafka.

The set of unique trades in the trade topic must equal the simulator's trade history exactly, with no record
doubled, across a restart of the ingest service in the middle.
"""

from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest
from coinpulse_common.avro import registry_client, schema_text
from coinpulse_common.kafka import admin
from coinpulse_testing.kafka import read_values
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn_python, stop
from coinpulse_testing.wait import WaitTimeout, wait_for
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MIN_DISCONNECTS = 4


def make_topics(settings, prefix: str) -> dict[str, str]:
    names = {"trade": f"{prefix}.upbit.trade", "ticker": f"{prefix}.upbit.ticker",
             "orderbook": f"{prefix}.upbit.orderbook", "raw_frame": f"{prefix}.upbit.raw",
             "dead_letter": f"{prefix}.dlq.ingest-upbit"}
    a = admin(settings)
    for f in a.create_topics([NewTopic(t, 3, 1) for t in names.values()]).values():
        f.result(30)
    reg = registry_client(settings.registry)
    for stem, topic in names.items():
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    return names


@pytest.mark.parametrize("ws_format", ["DEFAULT", "SIMPLE"])
def test_unique_trades_equal_simulator_history_across_faults_and_restart(stack, unique, tmp_path, ws_format):
    topics = make_topics(stack, f"it-{unique}")
    sim_port, metrics_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    markets = "KRW-BTC,KRW-ETH,KRW-XRP,KRW-SOL,KRW-DOGE"
    sim = spawn_python(["-m", "coinpulse_sim_upbit", "--port", str(sim_port), "--seed", "7", "--markets", markets,
                        # faults driven by the feed, not by the clock: every connection is cut after 50 frames, and
                        # the feed of 300 frames does not end before the 4th forced disconnect, however slow the machine
                        "--speed", "1", "--limit", "300", "--disconnect-every-frames", "50", "--min-disconnects",
                        str(MIN_DISCONNECTS), "--duplicate-rate", "0.05",
                        "--reorder-window", "6", "--malformed-rate", "0.05", "--rest-429-rate", "0.3"],
                       tmp_path / "sim.log")
    env = dict(os.environ, COINPULSE_INGEST_UPBIT_WS_URL=f"ws://127.0.0.1:{sim_port}/websocket/v1",
               COINPULSE_INGEST_UPBIT_REST_URL=sim_url, COINPULSE_INGEST_MARKETS=markets,
               COINPULSE_INGEST_METRICS_PORT=str(metrics_port), COINPULSE_INGEST_RECONNECT_BASE_S="0.3",
               COINPULSE_INGEST_TRADE_TOPIC=topics["trade"], COINPULSE_INGEST_TICKER_TOPIC=topics["ticker"],
               COINPULSE_INGEST_ORDERBOOK_TOPIC=topics["orderbook"], COINPULSE_INGEST_RAW_TOPIC=topics["raw_frame"],
               COINPULSE_INGEST_DLQ_TOPIC=topics["dead_letter"], COINPULSE_LOG_FORMAT="json", COINPULSE_INGEST_WS_FORMAT=ws_format)
    ingest = None
    try:
        wait_for(lambda: get_json(sim_url + "/sim/stats") is not None, 60, "the simulator to start", 0.5)
        ingest = spawn_python(["-m", "coinpulse_ingest_upbit"], tmp_path / "ingest1.log", env)
        wait_for(lambda: get_json(f"http://127.0.0.1:{metrics_port}/health"), 120,
                 lambda: "ingest's /health: " + (tmp_path / "ingest1.log").read_text()[-3000:], 0.5)
        # let it live through a couple of forced disconnects, then restart it mid-stream
        wait_for(lambda: (get_json(f"http://127.0.0.1:{metrics_port}/health") or {}).get("reconnects", 0) >= 2, 180,
                 lambda: "2 reconnects: " + (tmp_path / "ingest1.log").read_text()[-2000:], 0.5)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert "coinpulse_ingest_upbit_frames_total" in metrics and "coinpulse_ingest_upbit_e2e_lag_p99_ms" in metrics
        assert stop(ingest, 40) == 0
        # a real outage: wait until trades pile up in the simulator that only the backfill can bring back
        before = get_json(sim_url + "/sim/stats")["trades"]
        wait_for(lambda: get_json(sim_url + "/sim/stats")["trades"] >= before + 15, 120,
                 "15 more trades in the simulator (it stalled)", 0.5)
        ingest = spawn_python(["-m", "coinpulse_ingest_upbit"], tmp_path / "ingest2.log", env)
        wait_for(lambda: (get_json(sim_url + "/sim/stats") or {}).get("done"), 300,
                 lambda: f"the simulator's feed to finish: {get_json(sim_url + '/sim/stats')}", 0.5)
        history = get_json(sim_url + "/sim/trades")["trades"]
        want = {(t["market"], t["sequential_id"]) for t in history}
        assert len(want) == len(history) > 50

        def caught_up():
            got = read_values(stack, topics["trade"])
            return got if {(r["market"], r["sequential_id"]) for r in got} == want else None

        try:
            got = wait_for(caught_up, 120, "every trade in the topic", every=2.0)
        except WaitTimeout:
            got = read_values(stack, topics["trade"])
            have = {(r["market"], r["sequential_id"]) for r in got}
            by_sid = {(t["market"], t["sequential_id"]): t for t in history}
            missing = sorted((by_sid[k]["trade_timestamp"], k) for k in want - have)
            pytest.fail(f"missing {len(want - have)} extra {len(have - want)}: {missing[:10]} (last trade at "
                        f"{max(t['trade_timestamp'] for t in history)}); ingest1.log and ingest2.log in {tmp_path}; "
                        + (tmp_path / "ingest2.log").read_text()[-3000:])
        counts = Counter((r["market"], r["sequential_id"]) for r in got)
        assert max(counts.values()) == 1, f"doubled: {[k for k, v in counts.items() if v > 1][:10]}"
        by_key = {(t["market"], t["sequential_id"]): t for t in history}
        for r in got:  # the values, not only the identities, match the simulator
            h = by_key[(r["market"], r["sequential_id"])]
            assert (r["price"], r["volume"], r["ask_bid"]) == (h["price"], h["volume"], h["ask_bid"])
        assert any(r["backfilled"] and r["stream_type"] == "BACKFILL" for r in got)
        assert any(not r["backfilled"] and r["stream_type"] == "REALTIME" for r in got)
        dead = read_values(stack, topics["dead_letter"])
        assert dead and all(d["service"] == "ingest-upbit" and d["reason"] for d in dead)
        assert any(d["reason"].startswith(("invalid_json", "unknown_type", "bad_field", "empty_list")) for d in dead)
        raw = read_values(stack, topics["raw_frame"])
        assert {r["source"] for r in raw} == {"upbit.ws", "upbit.rest"}
        sim_stats = get_json(sim_url + "/sim/stats")
        assert sim_stats["duplicates_sent"] > 0 and sim_stats["disconnects_forced"] >= MIN_DISCONNECTS
        assert sim_stats["rest_429"] > 0
        assert stop(ingest, 40) == 0
        ingest = None
    finally:
        if ingest is not None:
            stop(ingest, 0)
        stop(sim, 10)

