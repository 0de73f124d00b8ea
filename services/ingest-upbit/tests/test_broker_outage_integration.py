"""A broker outage longer than the producers' delivery timeouts loses no trade and no candle.

On an isolated stack (own state folder, every port shifted by 4000): the simulator keeps trading while the broker
is killed for longer than librdkafka's old 300 s `message.timeout.ms`; afterwards the trade topic holds every trade
of the simulator's history exactly once. With the old default, the records produced early in the outage expired in
the producer while their ids were already in the dedupe set, so neither the live stream nor a backfill sent them
again.

The candle agent runs through the same outage with its delivery timeout (Faust's producer_request_timeout, 20 min
by Faust's default, a week by coinpulse's) cut to AGENT_TIMEOUT_S, so that the outage outlasts it: the candles it
closes during the outage cannot be delivered, and it must exit (EXIT_DELIVERY_FAILED) rather than go on and commit
past them. Started again once the broker is back, its final 1-minute candles equal the reference over the
simulator's history, minute by minute.

Waiting for the outage to last OUTAGE_S is the point of the test; every other wait is on a condition.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from coinpulse_candle_agent.app import EXIT_DELIVERY_FAILED
from coinpulse_common import topics
from coinpulse_platform.isolated import cli
from coinpulse_testing.kafka import read_values
from coinpulse_testing.net import get_json
from coinpulse_testing.procs import Procs, kill9_pid, spawn_python, stop
from coinpulse_testing.reference import reference_candles, sim_trades
from coinpulse_testing.sandbox import TopicReader, wait_for_candles
from coinpulse_testing.stacks import isolated_stack_fixture, part_pid, settings_of
from coinpulse_testing.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_stack, pytest.mark.timeout(1500)]  # ~9 min on a busy machine

OFFSET = 4000
# offset 4000 puts the broker on 33092, inside Linux's ephemeral range (32768-60999): while it is down, a client
# reconnecting to 127.0.0.1:33092 can be handed local port 33092 and connect to itself (TCP self-connect), and the
# restarted broker then fails to bind. Its two ports are moved below the range.
KAFKA_PORTS = {"COINPULSE_KAFKA_PORT": "27092", "COINPULSE_KAFKA_CONTROLLER_PORT": "27093"}
OUTAGE_S = 340.0  # longer than librdkafka's default message.timeout.ms (300 s)
MARKETS = "KRW-BTC,KRW-ETH,KRW-XRP"
TRADE_TOPIC = "upbit.trade"
AGENT_TIMEOUT_S = 30.0  # the candle agent's delivery timeout in this test: well inside the outage
AGENT_ENV = {"COINPULSE_CANDLE_DELIVERY_TIMEOUT_S": str(AGENT_TIMEOUT_S), "COINPULSE_CANDLE_GRACE_MS": "2000",
             "COINPULSE_CANDLE_IDLE_AFTER_MS": "1500", "COINPULSE_CANDLE_MENTIONS": "false"}


env = isolated_stack_fixture(OFFSET, folder="stack-outage", **KAFKA_PORTS)


def test_broker_outage_longer_than_300s_loses_no_trade(env, tmp_path):
    settings = settings_of(env)
    sim_port, metrics_port = env["COINPULSE_SIM_UPBIT_PORT"], env["COINPULSE_INGEST_METRICS_PORT"]
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = spawn_python(["-m", "coinpulse_sim_upbit", "--port", sim_port, "--seed", "11", "--markets", MARKETS,
                        "--speed", "1"], tmp_path / "sim.log", env)
    ingest_env = dict(env, COINPULSE_INGEST_UPBIT_WS_URL=f"ws://127.0.0.1:{sim_port}/websocket/v1",
                      COINPULSE_INGEST_UPBIT_REST_URL=sim_url, COINPULSE_INGEST_MARKETS=MARKETS)
    ingest = None
    agents = Procs(env, tmp_path)
    try:
        wait_for(lambda: get_json(sim_url + "/sim/stats"), 60, "the simulator", 1.0)
        ingest = spawn_python(["-m", "coinpulse_ingest_upbit"], tmp_path / "ingest.log", ingest_env)
        agent = agents.start("candle-agent", ["-m", "coinpulse_candle_agent"], AGENT_ENV)
        agent_metrics = f"http://127.0.0.1:{env['COINPULSE_CANDLE_METRICS_PORT']}/metrics"

        def ingest_log() -> str:
            return (tmp_path / "ingest.log").read_text(errors="replace")[-3000:]

        def health() -> dict:
            return get_json(f"http://127.0.0.1:{metrics_port}/health") or {}

        wait_for(lambda: health().get("delivered", 0) > 0 and health().get("trades", 0) > 0, 180,
                 lambda: "first trades delivered: " + ingest_log(), 1.0)

        def agent_candles() -> int:
            try:
                text = httpx.get(agent_metrics, timeout=5).text
            except httpx.HTTPError:  # its web server starts once its tables are recovered
                return 0
            return sum(int(float(line.split()[-1])) for line in text.splitlines()
                       if line.startswith("coinpulse_candle_candles_1m"))

        wait_for(lambda: agents.check() or agent_candles() > 0, 300,
                 lambda: "the agent's first candles: " + agents.tail("candle-agent"), 2.0)

        def traded() -> int:
            return (get_json(sim_url + "/sim/stats") or {}).get("trades", 0)

        kill9_pid(part_pid(env, "kafka"))
        down_at = time.monotonic()
        before = traded()
        # the outage itself: the simulator keeps trading, the ingester keeps reading
        while time.monotonic() - down_at < OUTAGE_S:
            assert ingest.poll() is None, "ingest died during the outage: " + ingest_log()
            time.sleep(5)
        assert traded() > before + 50, "the simulator did not trade during the outage"
        assert health().get("trades", 0) > 0
        # the agent closed candles it could not deliver within its timeout: it ended itself, committing nothing more
        assert agent.poll() == EXIT_DELIVERY_FAILED, (
            f"the agent should have exited with {EXIT_DELIVERY_FAILED} after {AGENT_TIMEOUT_S:.0f} s without "
            f"delivery; it {'runs' if agent.poll() is None else f'exited with {agent.poll()}'}: "
            + agents.tail("candle-agent"))
        assert "delivery_failed" in agents.tail("candle-agent", 20_000)
        r = cli(env, "up")
        assert r.returncode == 0, r.stdout + r.stderr
        agent = agents.start("candle-agent", *agents.starts["candle-agent"])
        after = traded()
        wait_for(lambda: traded() >= after + 20, 120, "trades after the broker came back", 1.0)
        httpx.post(sim_url + "/sim/finish", timeout=10)
        wait_for(lambda: (get_json(sim_url + "/sim/stats") or {}).get("done"), 120, "the feed to finish", 1.0)
        history = get_json(sim_url + "/sim/trades")["trades"]
        want = {(t["market"], t["sequential_id"]) for t in history}
        assert len(want) == len(history) > 200

        def caught_up():
            got = read_values(settings, TRADE_TOPIC, timeout=60)
            return got if {(r["market"], r["sequential_id"]) for r in got} >= want else None

        got = None
        try:
            got = wait_for(caught_up, 300, "every trade in the topic", every=5.0)
        except AssertionError:
            have = {(r["market"], r["sequential_id"]) for r in read_values(settings, TRADE_TOPIC, timeout=60)}
            pytest.fail(f"missing {len(want - have)} of {len(want)} trades after a {OUTAGE_S:.0f} s broker outage "
                        f"(ingest log in {tmp_path}): " + ingest_log())
        counts = Counter((r["market"], r["sequential_id"]) for r in got)
        assert set(counts) == want, f"trades the simulator never made: {sorted(set(counts) - want)[:10]}"
        assert max(counts.values()) == 1, f"doubled: {[k for k, v in counts.items() if v > 1][:10]}"
        assert ingest.poll() is None, "ingest died: " + ingest_log()

        # the candles: the restarted agent re-read what its predecessor could not deliver
        want = {topics.gold_key(m, b).encode(): c
                for (_, m, b), c in reference_candles(sim_trades(history), intervals=("1m",)).items()}
        reader = TopicReader(settings, topics.CANDLE_1M, topics.CANDLE_1M, 3)
        try:
            wait_for_candles(reader, want, 300, alive=lambda: agent.poll() is None)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{agents.tail('candle-agent')}") from None
        assert set(reader.last) == set(want), f"candles of no trade: {sorted(set(reader.last) - set(want))[:5]}"
        reader.close()
    finally:
        agents.stop_all(60)
        if ingest is not None:
            stop(ingest, 60)
        stop(sim, 60)
