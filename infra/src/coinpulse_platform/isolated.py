"""A second stack beside the main one, for kill tests and benchmarks: its own state folder and every port shifted.

Every `*_port` setting of every coinpulse Settings class (the stack's, the simulators', the services' metrics) moves
by the offset; URL overrides are dropped so they follow. Offsets used in the repo: 1000 (lifecycle test), 2000 (fault
e2e test), 3000 (e2e delay bench). Port ranges of neighbouring offsets overlap, so the dashboard, which would land on
the S3 port of the stack 1000 below, moves 50 further.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from coinpulse_common.paths import state_dir
from coinpulse_common.settings import env_var

from coinpulse_platform.envdoc import settings_classes

_URL_OVERRIDES = ("KAFKA_BOOTSTRAP", "REGISTRY_URL", "CONNECT_URL", "S3_ENDPOINT", "PG_HOST")


@functools.cache
def port_defaults() -> dict[str, int]:
    """{ENV NAME: default port} over all Settings classes, e.g. {"COINPULSE_KAFKA_PORT": 29092, ...}."""
    out: dict[str, int] = {}
    for _, cls in settings_classes():
        for name, field in cls.model_fields.items():
            if name.endswith("_port") and isinstance(field.default, int) and field.default > 0:
                out[env_var(cls, name)] = field.default
    return out


def stack_env(state: Path, offset: int, **extra: str) -> dict[str, str]:
    """The environment of an isolated stack whose state lives in `state` (JVM artifacts shared with the main one)."""
    env = {k: v for k, v in os.environ.items() if k.removeprefix("COINPULSE_") not in _URL_OVERRIDES}
    env.update({"COINPULSE_STATE_DIR": str(state), "COINPULSE_JVM_DIR": str(state_dir() / "jvm")})
    for name, port in port_defaults().items():
        base = int(os.environ.get(name, port))
        env[name] = str(base + offset + (50 if name == "COINPULSE_DASHBOARD_PORT" else 0))
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """`coinpulse ARGS` against the isolated stack, output captured."""
    return subprocess.run([sys.executable, "-m", "coinpulse_platform.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
