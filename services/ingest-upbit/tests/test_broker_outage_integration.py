"""A broker outage longer than librdkafka's default delivery timeout (300 s) loses no trade.

On an isolated stack (own state folder, every port shifted by 4000): the simulator keeps trading while the broker
is killed for longer than the old 300 s `message.timeout.ms`; afterwards the trade topic holds every trade of the
simulator's history exactly once. With the old default, the records produced early in the outage expired in the
producer while their ids were already in the dedupe set, so neither the live stream nor a backfill sent them again.

Waiting for the outage to last OUTAGE_S is the point of the test; every other wait is on a condition.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import consumer
from coinpulse_common.settings import Settings
from coinpulse_platform.isolated import cli, stack_env
from confluent_kafka import TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]  # ~9 min on a busy machine

OFFSET = 4000
# offset 4000 puts the broker on 33092, inside Linux's ephemeral range (32768-60999): while it is down, a client
# reconnecting to 127.0.0.1:33092 can be handed local port 33092 and connect to itself (TCP self-connect), and the
# restarted broker then fails to bind. Its two ports are moved below the range.
KAFKA_PORTS = {"COINPULSE_KAFKA_PORT": "27092", "COINPULSE_KAFKA_CONTROLLER_PORT": "27093"}
OUTAGE_S = 340.0  # longer than librdkafka's default message.timeout.ms (300 s)
MARKETS = "KRW-BTC,KRW-ETH,KRW-XRP"
TRADE_TOPIC = "upbit.trade"


@pytest.fixture(scope="module")
def env(tmp_path_factory, stack):
    d = tmp_path_factory.mktemp("stack-outage")
    os.chmod(d, 0o755)
    e = stack_env(d / "state", OFFSET, COINPULSE_LOG_FORMAT="json", **KAFKA_PORTS)
    r = cli(e, "up")
    assert r.returncode == 0, r.stdout + r.stderr
    yield e
    cli(e, "down", timeout=180)
    shutil.copytree(d / "state" / "logs", d / "logs")  # the stack's logs outlive the purge, for a failure's reader
    cli(e, "down", "--purge", timeout=180)


def _get(url: str):
    try:
        r = httpx.get(url, timeout=5)
        return r.json() if r.status_code < 500 else None
    except (httpx.HTTPError, ValueError):
        return None


def wait_for(pred, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(every)


def read_trades(settings: Settings) -> list[dict]:
    c = consumer(f"it-outage-read-{time.monotonic_ns()}", settings, **{"enable.partition.eof": True})
    try:
        de = AvroDeserializer(registry_client(settings.registry))
        ctx = SerializationContext(TRADE_TOPIC, MessageField.VALUE)
        md = c.list_topics(TRADE_TOPIC, timeout=10).topics[TRADE_TOPIC]
        c.assign([TopicPartition(TRADE_TOPIC, p, 0) for p in md.partitions])
        left, out = set(md.partitions), []
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        left.discard(m.partition())
                    continue
                out.append(de(m.value(), ctx))
        return out
    finally:
        c.close()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def test_broker_outage_longer_than_300s_loses_no_trade(env, tmp_path):
    settings = Settings(kafka_port=int(env["COINPULSE_KAFKA_PORT"]), registry_port=int(env["COINPULSE_REGISTRY_PORT"]))
    sim_port, metrics_port = env["COINPULSE_SIM_UPBIT_PORT"], env["COINPULSE_INGEST_METRICS_PORT"]
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = start(["coinpulse_sim_upbit", "--port", sim_port, "--seed", "11", "--markets", MARKETS, "--speed", "1"],
                env, tmp_path / "sim.log")
    ingest_env = dict(env, COINPULSE_UPBIT_WS_URL=f"ws://127.0.0.1:{sim_port}/websocket/v1",
                      COINPULSE_UPBIT_REST_URL=sim_url, COINPULSE_MARKETS=MARKETS)
    ingest = None
    try:
        wait_for(lambda: _get(sim_url + "/sim/stats"), 60, "the simulator")
        ingest = start(["coinpulse_ingest_upbit"], ingest_env, tmp_path / "ingest.log")

        def ingest_log() -> str:
            return (tmp_path / "ingest.log").read_text(errors="replace")[-3000:]

        def health() -> dict:
            return _get(f"http://127.0.0.1:{metrics_port}/health") or {}

        wait_for(lambda: health().get("delivered", 0) > 0 and health().get("trades", 0) > 0, 180,
                 "first trades delivered: " + ingest_log())

        def sim_trades() -> int:
            return (_get(sim_url + "/sim/stats") or {}).get("trades", 0)

        kafka_pid = json.loads(cli(env, "status", "--json", timeout=60).stdout)["kafka"]["pid"]
        broker = psutil.Process(kafka_pid)
        broker.send_signal(signal.SIGKILL)
        broker.wait(30)
        down_at = time.monotonic()
        before = sim_trades()
        # the outage itself: the simulator keeps trading, the ingester keeps reading
        while time.monotonic() - down_at < OUTAGE_S:
            assert ingest.poll() is None, "ingest died during the outage: " + ingest_log()
            time.sleep(5)
        assert sim_trades() > before + 50, "the simulator did not trade during the outage"
        assert health().get("trades", 0) > 0
        r = cli(env, "up")
        assert r.returncode == 0, r.stdout + r.stderr
        after = sim_trades()
        wait_for(lambda: sim_trades() >= after + 20, 120, "trades after the broker came back")
        httpx.post(sim_url + "/sim/finish", timeout=10)
        wait_for(lambda: (_get(sim_url + "/sim/stats") or {}).get("done"), 120, "the feed to finish")
        history = _get(sim_url + "/sim/trades")["trades"]
        want = {(t["market"], t["sequential_id"]) for t in history}
        assert len(want) == len(history) > 200

        def caught_up():
            got = read_trades(settings)
            return got if {(r["market"], r["sequential_id"]) for r in got} >= want else None

        got = None
        try:
            got = wait_for(caught_up, 300, "every trade in the topic", every=5.0)
        except AssertionError:
            have = {(r["market"], r["sequential_id"]) for r in read_trades(settings)}
            pytest.fail(f"missing {len(want - have)} of {len(want)} trades after a {OUTAGE_S:.0f} s broker outage "
                        f"(ingest log in {tmp_path}): " + ingest_log())
        counts = Counter((r["market"], r["sequential_id"]) for r in got)
        assert set(counts) == want, f"trades the simulator never made: {sorted(set(counts) - want)[:10]}"
        assert max(counts.values()) == 1, f"doubled: {[k for k, v in counts.items() if v > 1][:10]}"
        assert ingest.poll() is None, "ingest died: " + ingest_log()
    finally:
        if ingest is not None:
            stop(ingest)
        stop(sim)
