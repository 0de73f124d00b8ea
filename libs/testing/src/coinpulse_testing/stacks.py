"""An isolated second stack for kill tests and benchmarks, built on coinpulse_platform.isolated: its own state
folder, every port shifted by an offset (see isolated.py for the offsets in use), `coinpulse up` on entry; on exit
`coinpulse down`, the stack's logs copied beside the state (they outlive the purge, for whoever reads a failure),
then `down --purge`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coinpulse_common.paths import state_dir
from coinpulse_common.settings import Settings
from coinpulse_platform.isolated import cli, stack_env


@contextlib.contextmanager
def isolated_stack(root: Path, offset: int, **extra: str) -> Iterator[dict[str, str]]:
    """Yields the environment of a healthy stack whose state is `root/state` (logs kept in `root/logs`).

    `extra` adds to (or overrides) its environment; COINPULSE_LOG_FORMAT is json unless given. The stack is taken
    down and purged also when `coinpulse up` fails (whatever it had started)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # the stack's PostgreSQL runs as another user and must reach its data below
    env = stack_env(root / "state", offset, **{"COINPULSE_LOG_FORMAT": "json", **extra})
    try:
        r = cli(env, "up")
        assert r.returncode == 0, f"coinpulse up (ports +{offset}) failed:\n{r.stdout}\n{r.stderr}"
        yield env
    finally:
        cli(env, "down", timeout=180)
        if (root / "state" / "logs").is_dir():
            shutil.copytree(root / "state" / "logs", root / "logs", dirs_exist_ok=True)
        cli(env, "down", "--purge", timeout=180)


KEEP_ROOTS = 3


def stack_root(folder: str) -> Path:
    """A fresh folder for an isolated stack's state, under the state dir's `test-stacks/` (the newest KEEP_ROOTS of
    each name are kept for whoever reads a failure, older ones removed).

    Not under pytest's temp folder: every pytest session strips the group/other bits of `/tmp/pytest-of-<user>`
    (pytest's own hardening), so a second pytest started meanwhile takes away the access the stack's PostgreSQL,
    running as the `postgres` user, has to its data directory below (initdb aborted with "Permission denied")."""
    base = state_dir() / "test-stacks"
    base.mkdir(parents=True, exist_ok=True)
    old = sorted(base.glob(f"{folder}-*"), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - (KEEP_ROOTS - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix=f"{folder}-", dir=base))
    os.chmod(root, 0o755)
    return root


def isolated_stack_fixture(offset: int, name: str = "env", folder: str = "stack", **extra: str) -> object:
    """A module-scoped fixture `name` yielding an isolated_stack's environment (state in `stack_root(folder)`).

    It takes the main `stack` fixture first: the isolated stack shares the main one's JVM artifacts.
    Use: `env = isolated_stack_fixture(2000, folder="stack-fault")` at module level."""

    @pytest.fixture(scope="module", name=name)
    def _fixture(stack: Settings) -> Iterator[dict[str, str]]:
        with isolated_stack(stack_root(folder), offset, **extra) as env:
            yield env

    return _fixture


def part_pid(env: dict[str, str], part: str) -> int:
    """The pid of a part (kafka, registry, connect, postgres, ...) of the stack of `env`."""
    r = cli(env, "status", "--json", timeout=60)
    pid: int = json.loads(r.stdout)[part]["pid"]
    return pid


def settings_of(env: dict[str, str]) -> Settings:
    """The common Settings of the stack of `env`: its ports, no URL override (the rest as in this process)."""
    fields = Settings.model_fields
    # ints; typed Any as `**ports` also meets the `_env_file`, `_case_sensitive`, ... parameters of BaseSettings
    ports: dict[str, Any] = {k.removeprefix("COINPULSE_").lower(): int(v) for k, v in env.items()
                             if k.startswith("COINPULSE_") and k.endswith("_PORT")
                             and k.removeprefix("COINPULSE_").lower() in fields}
    return Settings(**ports, kafka_bootstrap=None, registry_url=None, connect_url=None, s3_endpoint=None, pg_host=None)
