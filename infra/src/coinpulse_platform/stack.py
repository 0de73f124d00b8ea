"""The native stack: starts its parts (`parts.py`) in parallel on health checks, stops them, reports status.

Processes run detached (own session, output to `<state>/logs/<part>.log`), each with a pidfile in `<state>/run/`.
`up` starts parts in parallel as soon as their dependencies are healthy and waits on real health checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.proc import alive, exclusive, stop_group
from coinpulse_common.settings import Settings, get_settings

from coinpulse_platform import artifacts
from coinpulse_platform.parts import PARTS, Part, _java_at_least, kafka_cluster_id, pg_bin, prefect_env


class Stack:
    def __init__(self, settings: Settings | None = None, progress: Callable[[str], None] | None = None):
        self.s = settings or get_settings()
        self.state = state_dir()
        self.run_dir = self.state / "run"
        self.log_dir = self.state / "logs"
        self.conf_dir = self.state / "conf"
        self.data = self.state / "data"
        self.progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._paths: dict[str, Path] | None = None
        self.parts: dict[str, Part] = {cls.name: cls(self) for cls in PARTS}

    # ---------------------------------------------------------------- paths, pids
    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        f = self.pidfile(name)
        if not f.is_file():
            return None
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            return None
        return pid if alive(pid) else None

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            self._paths = artifacts.ensure(self.progress)
        return self._paths

    def java(self, min_version: int = 17) -> str:
        if min_version > 17:
            return _java_at_least(min_version)
        home = os.environ.get("JAVA_HOME")
        j = str(Path(home, "bin", "java")) if home else shutil.which("java")
        if not j:
            raise RuntimeError("Java 17+ not found; install it (Debian: apt-get install openjdk-17-jre-headless)")
        return j

    # ---------------------------------------------------------------- lifecycle
    def start_part(self, name: str) -> int:
        part = self.parts[name]
        pid = self.pid(name)
        if pid is not None:
            return pid
        part.prepare()
        cmd, env, cwd = part.command()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        log.write(f"\n==== coinpulse: starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        log.flush()
        full_env = {**os.environ, **env}
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def healthy(self, name: str) -> tuple[bool, str]:
        try:
            return self.parts[name].health()
        except Exception as e:  # noqa: BLE001
            return False, f"error: {e}"

    def up(self, timeout: float | None = None, only: list[str] | None = None) -> dict[str, float]:
        """Start every part (or `only` and their dependencies); returns seconds to healthy per part.

        One `up` at a time per state folder: a second one (the two `make test` sessions on a fresh clone, or two
        terminals) waits for the first, then finds its parts healthy, instead of starting every part twice."""
        with exclusive(self.state / "up.lock", self.progress,
                       f"another `coinpulse up` is starting the stack in {self.state}; waiting for it"):
            return self._up(timeout, only)

    def _up(self, timeout: float | None, only: list[str] | None) -> dict[str, float]:
        timeout = timeout or self.s.start_timeout
        wanted = _with_deps(self.parts, only or list(self.parts))
        t0 = time.monotonic()
        self.paths()  # fetch artifacts once, before the parallel starts
        results: dict[str, float] = {}
        errors: dict[str, str] = {}
        events = {n: threading.Event() for n in wanted}

        def run(name: str) -> None:
            part = self.parts[name]
            try:
                for d in part.deps:
                    if not events[d].wait(timeout) or d in errors:
                        raise RuntimeError(f"dependency {d} did not become healthy")
                ok, _ = self.healthy(name)
                if not ok:
                    pid = self.start_part(name)
                    deadline = t0 + timeout
                    while True:
                        ok, _ = self.healthy(name)
                        if ok:
                            break
                        if not alive(pid):
                            raise RuntimeError(f"{name} exited during start-up; see {self.log_dir / (name + '.log')}")
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name} not healthy after {timeout:.0f}s; "
                                               f"see {self.log_dir / (name + '.log')}")
                        time.sleep(0.25)
                part.after_healthy()
                results[name] = time.monotonic() - t0
                self.progress(f"{name:9s} healthy on {self.s.host}:{part.port} after {results[name]:.1f}s")
            except Exception as e:  # noqa: BLE001
                errors[name] = str(e)
            finally:
                events[name].set()

        threads = [threading.Thread(target=run, args=(n,), name=f"up-{n}") for n in wanted]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("; ".join(f"{k}: {v}" for k, v in errors.items()))
        return results

    def stop_part(self, name: str) -> bool:
        part = self.parts[name]
        pid = self.pid(name)
        if pid is None:
            self.pidfile(name).unlink(missing_ok=True)
            return False
        stop_group(pid, part.stop_signal, part.stop_timeout,
                   on_timeout=lambda: self.progress(f"{name} did not stop in {part.stop_timeout:.0f}s; killing"))
        self.pidfile(name).unlink(missing_ok=True)
        return True

    def down(self, purge: bool = False) -> list[str]:
        from coinpulse_platform import services
        stopped = services.stop_all(self)
        # dependents first
        for name in ["connect", "registry", "prefect", "s3", "kafka", "postgres"]:
            if self.stop_part(name):
                stopped.append(name)
        if purge:
            # the services' own local state describes data in Kafka (the crawler's watermarks and reply counts, the
            # agent's table store): kept, a purged stack's crawler would skip every post it had crawled before
            for d in (self.data, self.conf_dir, self.run_dir, self.state / "kafka-cluster-id",
                      self.state / "pgsock", self.state / "prefect", self.state / "services",
                      self.state / "crawl-dc", self.state / "candle-agent"):
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
                elif d.exists():
                    d.unlink()
        return stopped

    def status(self) -> dict[str, dict]:
        out = {}
        for name, part in self.parts.items():
            pid = self.pid(name)
            ok, ver = self.healthy(name)
            out[name] = {"healthy": ok, "host": self.s.host, "port": part.port, "version": ver, "pid": pid,
                         "running": pid is not None, "rss_mb": _tree_mem(pid, "VmRSS"),
                         "peak_rss_mb": _tree_mem(pid, "VmHWM")}
        return out


# -------------------------------------------------------------------- helpers
def _children(pid: int) -> list[int]:
    try:
        import psutil
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        return []


def _tree_mem(pid: int | None, field_name: str) -> float | None:
    if pid is None:
        return None
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _with_deps(parts: dict[str, Part], names: list[str]) -> list[str]:
    out: list[str] = []

    def add(n: str) -> None:
        if n not in parts:
            raise KeyError(f"unknown part {n!r}; parts: {', '.join(parts)}")
        for d in parts[n].deps:
            add(d)
        if n not in out:
            out.append(n)

    for n in names:
        add(n)
    return out


def status_json(stack: Stack) -> str:
    return json.dumps(stack.status(), indent=2, default=str)


__all__ = ["Stack", "Part", "kafka_cluster_id", "pg_bin", "prefect_env", "repo_root"]
