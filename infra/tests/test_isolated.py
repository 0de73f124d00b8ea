"""Isolated stacks: every port moves, and the offsets the repo uses never share a port."""

from pathlib import Path

import pytest
from coinpulse_platform.isolated import port_defaults, stack_env

pytestmark = pytest.mark.unit


def test_every_port_setting_moves_and_urls_follow(monkeypatch):
    monkeypatch.setenv("COINPULSE_KAFKA_BOOTSTRAP", "elsewhere:9092")
    defaults = port_defaults()
    assert {"COINPULSE_KAFKA_PORT", "COINPULSE_SIM_UPBIT_PORT", "COINPULSE_CANDLE_METRICS_PORT"} <= set(defaults)
    env = stack_env(Path("/tmp/s"), 2000)
    assert all(int(env[k]) >= v + 2000 for k, v in defaults.items())
    assert "COINPULSE_KAFKA_BOOTSTRAP" not in env and env["COINPULSE_STATE_DIR"] == "/tmp/s"


def test_the_repos_offsets_never_share_a_port():
    seen: dict[int, tuple[int, str]] = {}
    for offset in (0, 1000, 2000, 3000):  # main stack, lifecycle test, fault e2e, e2e delay bench
        env = stack_env(Path("/tmp/s"), offset) if offset else {k: str(v) for k, v in port_defaults().items()}
        for name in port_defaults():
            port = int(env[name])
            assert port not in seen, f"{name} of +{offset} = {seen.get(port)} on {port}"
            seen[port] = (offset, name)
