"""Lifecycle of a second, isolated native stack (own state folder and ports, shared JVM artifacts):
`up` to all-healthy, kill -9 of the broker and the registry then `up` again with topics, data and schemas intact,
and `down` leaving no process behind (checked by pid, children included)."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest
from coinpulse_common.topics import TOPICS
from coinpulse_platform.isolated import cli, stack_env
from coinpulse_testing.stacks import stack_root
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_stack]

OFFSET = 1000


@pytest.fixture(scope="module")
def env(stack):
    d = stack_root("stack-lifecycle")  # not under pytest's temp folder: see stack_root
    e = stack_env(d / "state", OFFSET)
    yield e
    cli(e, "down", "--purge", timeout=180)


def status(env) -> dict:
    r = cli(env, "status", "--json", timeout=60)
    return json.loads(r.stdout)


def test_up_kill_recover_down(env):
    t0 = time.monotonic()
    r = cli(env, "up")
    assert r.returncode == 0, r.stdout + r.stderr
    first_start = time.monotonic() - t0
    st = status(env)
    assert all(p["healthy"] for p in st.values()), st
    print(f"isolated stack start: {first_start:.1f}s; rss MB: { {k: v['rss_mb'] for k, v in st.items()} }")

    bootstrap = f"127.0.0.1:{env['COINPULSE_KAFKA_PORT']}"
    registry = f"http://127.0.0.1:{env['COINPULSE_REGISTRY_PORT']}/apis/ccompat/v7"
    # some data to survive the kills
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(10):
        p.produce("dlq.connect", key=b"k", value=b"v%d" % i)
    assert p.flush(30) == 0
    subjects_before = set(SchemaRegistryClient({"url": registry}).get_subjects())
    assert {t.subject for t in TOPICS} <= subjects_before

    # kill -9 the broker and the registry; `up` brings them back
    for part in ("kafka", "registry"):
        os.kill(st[part]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(st["kafka"]["pid"]) and psutil.Process(st["kafka"]["pid"]).status() != "zombie":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not status(env)["kafka"]["healthy"]
    r = cli(env, "up")
    assert r.returncode == 0, r.stdout + r.stderr
    st2 = status(env)
    assert all(p["healthy"] for p in st2.values()), st2
    assert st2["kafka"]["pid"] != st["kafka"]["pid"]

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lifecycle"})
    topics = c.list_topics(timeout=10).topics
    assert {t.name for t in TOPICS} <= set(topics)
    assert c.get_watermark_offsets(TopicPartition("dlq.connect", 0), timeout=10)[1] == 10
    c.close()
    assert set(SchemaRegistryClient({"url": registry}).get_subjects()) == subjects_before

    # down: every process we started, children included, is gone
    pids = set()
    for part in st2.values():
        pids.add(part["pid"])
        pids.update(ch.pid for ch in psutil.Process(part["pid"]).children(recursive=True))
    r = cli(env, "down")
    assert r.returncode == 0, r.stderr
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == [], f"strays after down: {alive}"
    assert not any(p["running"] for p in status(env).values())
