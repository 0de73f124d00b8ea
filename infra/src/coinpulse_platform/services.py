"""coinpulse's own services and simulators: run one in the foreground, or detached for the demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.proc import alive, stop_group

SERVICES = {
    "ingest-upbit": "coinpulse_ingest_upbit",
    "crawl-dc": "coinpulse_crawl_dc",
    "candle-agent": "coinpulse_candle_agent",
    "sink": "coinpulse_sink",
    "dashboard": "coinpulse_dashboard",
    "flows": "coinpulse_flows",
}
SIMULATORS = {
    "upbit": "coinpulse_sim_upbit",
    "dcinside": "coinpulse_sim_dcinside",
}


def module_for(name: str, table: dict[str, str]) -> str:
    if name not in table:
        raise KeyError(f"unknown {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def run_foreground(module: str, args: list[str]) -> int:
    """Replace this process with `python -m module args` (signals go straight to the service)."""
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
    return 0  # not reached


def _dir() -> Path:
    d = state_dir() / "services"
    d.mkdir(parents=True, exist_ok=True)
    return d


def start_detached(name: str, module: str, args: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    pidf = _dir() / f"{name}.pid"
    if pidf.is_file():
        pid = int(pidf.read_text())
        if alive(pid):
            return pid
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / f"{name}.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", module, *(args or [])], cwd=repo_root(),
                            env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pidf.write_text(str(proc.pid))
    return proc.pid


def stop_all(stack=None) -> list[str]:
    stopped = []
    for pidf in sorted(_dir().glob("*.pid")):
        pid = int(pidf.read_text())
        if alive(pid):
            stop_group(pid, signal.SIGTERM, 20)
            stopped.append(pidf.stem)
        pidf.unlink(missing_ok=True)
    return stopped
