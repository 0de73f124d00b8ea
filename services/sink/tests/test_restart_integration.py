"""Kill Connect (once, in this module only) or the sink service mid-stream and restart: the result equals an
uninterrupted run — one row per key with the latest value, every bronze record in exactly one object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from coinpulse_common.s3 import client as s3_client
from coinpulse_sink.service import SinkService
from coinpulse_sink.settings import SinkSettings
from coinpulse_testing.net import free_port
from coinpulse_testing.procs import kill9, spawn_python, stop
from coinpulse_testing.wait import wait_for
from confluent_kafka import Consumer, TopicPartition

from .conftest import candle_sink, now_ms, trade

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coinpulse_platform.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _candle(market, bucket, revision):
    return {"market": market, "interval": "1m", "bucket_start": bucket, "open": 1.0, "high": 2.0, "low": 0.5,
            "close": 1.0 + revision, "volume": 3.0, "quote_volume": 4.0, "vwap": 4 / 3, "trade_count": 3 + revision,
            "buy_volume": 1.0, "sell_volume": 2.0, "first_trade_at": bucket, "last_trade_at": bucket + 1,
            "revision": revision, "emitted_at": bucket + 61_000}


def test_kill_connect_mid_stream_and_restart_gives_the_uninterrupted_result(namespace):
    ns = namespace
    t0 = now_ms() - 3_600_000
    minute = t0 - t0 % 60_000
    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
    expected_trades, expected_candles = {}, {}

    def send_batch(lo, hi, revision):
        for i in range(lo, hi):
            m = markets[i % 3]
            rec = trade(i, market=m, price=100.0 + i, t0=t0)
            ns.send("upbit.trade", m, rec)
            expected_trades[(m, rec["sequential_id"])] = (rec["price"], rec["trade_timestamp"])
        for k in range(20):  # the same 20 candles, revised each batch
            m, b = markets[k % 3], minute + k * 60_000
            ns.send("candle.1m", f"{m}|{b}", _candle(m, b, revision))
            expected_candles[(m, b)] = (revision, 1.0 + revision)
        ns.flush()

    svc = SinkService(SinkSettings(sink_namespace=ns.ns, sink_metrics_port=free_port(), sink_bronze=False,
                                   sink_connectors="silver-trades,gold-candles", sink_supervise_interval_s=1.0))
    svc.start()
    try:
        send_batch(0, 3000, 0)
        wait_for(lambda: ns.rows("SELECT count(*) FROM {silver}.trades")[0][0] > 0, 120, "first rows")
        pid = json.loads(_cli("status", "--json").stdout)["connect"]["pid"]
        os.kill(pid, signal.SIGKILL)
        send_batch(1000, 6000, 1)  # overlaps the first batch: replays of the same identities
        send_batch(6000, 6000, 2)  # a last revision of every candle
        r = _cli("up")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: ns.rows("SELECT count(*) FROM {silver}.trades")[0][0] == len(expected_trades)
                 and ns.rows("SELECT min(revision) FROM {gold}.candles")[0][0] == 2, 300,
                 lambda: f"all rows after the restart; have {ns.rows('SELECT count(*) FROM {silver}.trades')}; "
                         f"health {json.dumps(svc.health())[:1500]}")
        got = ns.rows("SELECT market, sequential_id, price, (extract(epoch FROM trade_timestamp) * 1000)::bigint "
                      "FROM {silver}.trades")
        assert {(m, s): (p, ts) for m, s, p, ts in got} == expected_trades and len(got) == len(expected_trades)
        candles = ns.rows("SELECT market, (extract(epoch FROM bucket_start) * 1000)::bigint, revision, close "
                          "FROM {gold}.candles")
        assert {(m, b): (rv, c) for m, b, rv, c in candles} == expected_candles and len(candles) == 20
        wait_for(lambda: svc.supervisor.healthy, 60, lambda: json.dumps(svc.supervisor.health())[:1500])
    finally:
        svc.shutdown()


def test_rows_keep_arriving_while_the_registry_is_down(namespace):
    """The converter resolves a schema once and keeps it: a registry outage longer than the converter's default
    refresh period (30 s) must neither stop the rows nor turn good records into dead letters."""
    ns = namespace
    send_revision, landed = _candle_revisions(ns)
    svc = candle_sink(ns)
    try:
        send_revision(0)
        wait_for(lambda: landed(0), 120, "the first revision in PostgreSQL")
        os.kill(json.loads(_cli("status", "--json").stdout)["registry"]["pid"], signal.SIGKILL)
        down_since, revision = time.monotonic(), 0
        while time.monotonic() - down_since < 45:  # the outage: one revision after another lands meanwhile
            revision += 1
            send_revision(revision)
            wait_for(lambda r=revision: landed(r), 120,
                     lambda r=revision: f"revision {r} in PostgreSQL {time.monotonic() - down_since:.0f} s into the "
                                        f"registry outage; dead letters: {ns.dead_letters()}")
        assert revision >= 3
        r = _cli("up")
        assert r.returncode == 0, r.stdout + r.stderr
        assert ns.dead_letters() == 0
    finally:
        svc.shutdown()
        _cli("up")  # the registry back for the tests that follow, whatever happened here


def test_a_task_started_while_the_registry_is_down_loses_nothing(namespace):
    """A restarted task has no schema cached: the records it reads while the registry is down become dead letters
    like bad records would. The sink rewinds the connector to them once the registry is back."""
    ns = namespace
    send_revision, landed = _candle_revisions(ns)
    svc = candle_sink(ns)
    connect = ns.settings.connect
    name = f"{ns.ns}-coinpulse-gold-candles"
    try:
        send_revision(0)
        wait_for(lambda: landed(0), 120, "the first revision in PostgreSQL")
        os.kill(json.loads(_cli("status", "--json").stdout)["registry"]["pid"], signal.SIGKILL)
        httpx.post(f"{connect}/connectors/{name}/restart?includeTasks=true", timeout=30).raise_for_status()
        wait_for(lambda: (st := httpx.get(f"{connect}/connectors/{name}/status", timeout=30).json())["tasks"]
                 and st["tasks"][0]["state"] == "RUNNING", 60, "the restarted task")
        send_revision(1)
        wait_for(lambda: ns.dead_letters() >= 20, 60, "the records read without a schema as dead letters")
        r = _cli("up")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: landed(1), 120, lambda: f"revision 1 after the registry came back: "
                                                  f"{ns.rows('SELECT min(revision), count(*) FROM {gold}.candles')}, "
                                                  f"health {json.dumps(svc.health())[:1500]}; "
                                                  f"first dead letter {_first_dead_letter(ns)}")
        assert svc.metrics.registry.get_sample_value("coinpulse_sink_connect_rewinds_total", {"connector": name}) >= 1
        assert svc.metrics.registry.get_sample_value("coinpulse_sink_connect_dead_letters_kept_total") == 0
    finally:
        svc.shutdown()
        _cli("up")


def _candle_revisions(ns):
    """send(revision): the same 20 candles at `revision`; landed(revision): all 20 in PostgreSQL at it."""
    t0 = now_ms() - 3_600_000
    minute = t0 - t0 % 60_000
    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]

    def send(revision):
        for k in range(20):
            m, b = markets[k % 3], minute + k * 60_000
            ns.send("candle.1m", f"{m}|{b}", _candle(m, b, revision))
        ns.flush()

    def landed(revision):
        return ns.rows("SELECT min(revision), count(*) FROM {gold}.candles")[0] == (revision, 20)

    return send, landed


def _first_dead_letter(ns) -> dict[str, str]:
    c = Consumer({"bootstrap.servers": ns.settings.bootstrap, "group.id": f"{ns.ns}-dlq-peek",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(ns.topic("dlq.connect"), 0, 0)])
        m = c.poll(10)
        return {k: (v or b"").decode(errors="replace")[:400] for k, v in (m.headers() or [])} if m else {}
    finally:
        c.close()


def _frame(seq: int, t: int) -> dict:
    return {"source": "upbit.ws", "connection_id": "c1", "seq": seq, "received_at": t, "payload": f'{{"seq":{seq}}}',
            "market": "KRW-BTC", "url": None}


def test_kill_the_sink_service_mid_stream_keeps_every_bronze_record_exactly_once(namespace, tmp_path):
    ns = namespace
    env = {**os.environ, "COINPULSE_SINK_NAMESPACE": ns.ns, "COINPULSE_SINK_APPLY_CONNECTORS": "false",
           "COINPULSE_SINK_METRICS_PORT": str(free_port()), "COINPULSE_SINK_BRONZE_FLUSH_RECORDS": "97",
           "COINPULSE_SINK_BRONZE_MAX_AGE_S": "0.5", "PYTHONUNBUFFERED": "1"}
    t0 = now_ms() - 7_200_000
    n = 3000

    def start(i):
        return spawn_python(["-m", "coinpulse_sink", "run"], tmp_path / f"sink{i}.log", env)

    s3 = s3_client(ns.settings)

    def objects():
        listed = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ns.settings.s3_bucket, Prefix=f"{ns.ns}/"):
            listed += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        return listed

    for seq in range(n // 2):
        ns.send("upbit.raw", "KRW-BTC", _frame(seq, t0 + seq * 2000))  # 2 s apart: crosses hour boundaries
    ns.flush()
    p = start(0)
    try:
        wait_for(lambda: len(objects()) >= 3, 90, lambda: (tmp_path / "sink0.log").read_text()[-2000:])
        kill9(p)
        for seq in range(n // 2, n):
            ns.send("upbit.raw", "KRW-BTC", _frame(seq, t0 + seq * 2000))
        ns.flush()
        p = start(1)

        def all_offsets():
            seen = []
            for key in objects():
                body = s3.get_object(Bucket=ns.settings.s3_bucket, Key=key)["Body"].read()
                seen += [json.loads(line)["offset"] for line in body.splitlines()]
            return seen if len(set(seen)) == n else None

        seen = wait_for(all_offsets, 120, lambda: (tmp_path / "sink1.log").read_text()[-2000:], every=1.0)
        assert sorted(seen) == list(range(n))  # every record in exactly one object: no overlap, no loss
        for key in objects():
            body = s3.get_object(Bucket=ns.settings.s3_bucket, Key=key)["Body"].read().splitlines()
            first = json.loads(body[0])
            assert key.endswith(f"+0+{first['offset']}.jsonl")
            hours = {time.strftime("%Y-%m-%d/%H", time.gmtime(json.loads(x)["value"]["received_at"] / 1000))
                     for x in body}
            assert len(hours) == 1 and key.split("/dt=")[1].replace("/hour=", "/").startswith(hours.pop())
    finally:
        stop(p, 30)
