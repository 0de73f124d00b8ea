"""Service subprocesses of a test or benchmark: each in its own session (so its process group is its own), output
appended to a log file, stopped by group (SIGTERM, wait, SIGKILL) through coinpulse_common.proc. Only processes
started here are ever signalled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from coinpulse_common.proc import alive, signal_group


def spawn(cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cpu: int | None = None,
          cwd: Path | str | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in a new session with stdout and stderr appended to `log`; pinned to core `cpu` when given (with
    taskset, where there is one and the machine has that core)."""
    cmd = list(cmd)
    if cpu is not None and sys.platform.startswith("linux") and shutil.which("taskset") and (os.cpu_count() or 1) > cpu:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=dict(os.environ if env is None else env), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True)


def spawn_python(args: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cpu: int | None = None,
                 cwd: Path | str | None = None) -> subprocess.Popen[bytes]:
    """`python ARGS` on this interpreter: `["-m", "coinpulse_sink", "run"]`, or a script and its arguments."""
    return spawn([sys.executable, *args], log, env, cpu, cwd)


def stop_all(procs: Iterable[subprocess.Popen[Any]], timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to the group of every running process at once, give them `timeout` s together to exit, then
    SIGKILL the groups still there (stragglers of exited leaders too); every process is reaped."""
    procs = list(procs)
    running = [p for p in procs if p.poll() is None]  # not reaped yet: the pid is still ours
    for p in running:
        signal_group(p.pid, sig)
    deadline = time.monotonic() + timeout
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in running:
        try:  # the group: the leader if it is still there, and its stragglers (none: no such group)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()


def stop(p: subprocess.Popen[Any], timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
    """Stop one process (see stop_all) and return its exit code (-9 if it had to be killed)."""
    stop_all([p], timeout, sig)
    return p.returncode


def kill9(p: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGKILL the process's group (a crash, for kill tests) and reap it."""
    if p.poll() is None:
        signal_group(p.pid, signal.SIGKILL)
    p.wait(timeout)


def kill9_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGKILL a process that is not our child (e.g. a part of an isolated stack) and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {pid} still alive {timeout:g}s after SIGKILL")
        time.sleep(0.05)


class Procs:
    """Named service processes sharing an environment, each logging to `logs/NAME.log`."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env, self.logs = dict(env), logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(self, name: str, args: Sequence[str], extra: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`python ARGS` (e.g. `["-m", "coinpulse_sink", "run"]`) with the environment plus `extra`."""
        self.starts[name] = (list(args), dict(extra or {}))
        p = spawn_python(args, self.log(name), {**self.env, **(extra or {})})
        self.procs[name] = p
        return p

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-n:] if path.is_file() else ""

    def check(self) -> None:
        """Raise if any process has exited (with its exit code and the tail of its log)."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}: {self.tail(name)}")

    def kill9_and_restart(self, name: str) -> subprocess.Popen[bytes]:
        p = self.procs[name]
        assert p.poll() is None, f"{name} died on its own: {self.tail(name)}"
        kill9(p)
        return self.start(name, *self.starts[name])

    def stop_all(self, timeout: float = 20.0) -> None:
        stop_all(self.procs.values(), timeout)
