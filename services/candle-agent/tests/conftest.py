"""Fixtures for the candle-agent integration tests: private topic sets and agent processes we own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from coinpulse_common.paths import state_dir
from coinpulse_testing import procs
from coinpulse_testing.net import free_port
from coinpulse_testing.sandbox import TopicSet, start_agent


@pytest.fixture
def topic_set(stack, unique) -> TopicSet:
    ts = TopicSet(f"it-candle-{unique}")
    ts.create(stack)
    return ts


class Agents:
    """Starts `python -m coinpulse_candle_agent` processes for one app id; kills only those at teardown."""

    def __init__(self, topic_set: TopicSet, app_id: str, log_dir: Path, **settings):
        self.topic_set = topic_set
        self.app_id = app_id
        self.log_dir = log_dir
        self.settings = settings
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        port = free_port()
        env = self.topic_set.agent_env(self.app_id, port, **self.settings)
        proc = start_agent(env, str(self.log_dir / f"{self.app_id}.log"))
        proc.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def kill9(self, proc: subprocess.Popen) -> None:
        procs.kill9(proc, 10)

    def log(self) -> str:
        return (self.log_dir / f"{self.app_id}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        procs.stop_all(self.procs, 20)


@pytest.fixture
def agents(topic_set, unique) -> Iterator:
    log_dir = state_dir() / "logs" / "candle-agent-tests"
    log_dir.mkdir(parents=True, exist_ok=True)
    made: list[Agents] = []

    def make(**settings) -> Agents:
        a = Agents(topic_set, f"it-candle-{unique}-{len(made)}", log_dir, **settings)
        made.append(a)
        return a

    yield make
    for a in made:
        a.stop_all()
