"""Apply connector files through the Connect REST API and keep them running.

`ConnectSupervisor.tick()` (called every few seconds): when Connect answers, make sure each connector's config is
the rendered file (PUT only when it differs, so applying is idempotent and restarts nothing needlessly), read its
status, and restart a FAILED connector or task with exponential backoff per (connector, task). Everything it sees
is kept in `self.view` for /health and exported as metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from coinpulse_common.logging import get_logger

from coinpulse_sink import connectors as cfiles
from coinpulse_sink.metrics import SinkMetrics

log = get_logger("coinpulse.sink.supervisor")


@dataclass
class Backoff:
    """Exponential backoff: failure n waits base * 2**(n-1), capped; a healthy streak resets it."""

    base_s: float
    cap_s: float
    failures: int = 0
    next_at: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.next_at

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        self.next_at = now + delay
        return delay

    def reset(self) -> None:
        self.failures, self.next_at = 0, 0.0


@dataclass(frozen=True)
class Action:
    kind: str  # restart_connector | restart_task
    connector: str
    task: int | None = None


def plan(name: str, status: dict[str, Any], backoffs: dict[tuple[str, int | None], Backoff], now: float,
         base_s: float, cap_s: float) -> list[Action]:
    """Restarts due for one connector's status document; resets the backoff of whatever is RUNNING."""
    out: list[Action] = []
    units: list[tuple[int | None, str]] = [(None, status.get("connector", {}).get("state", "UNKNOWN"))]
    units += [(t["id"], t.get("state", "UNKNOWN")) for t in status.get("tasks", [])]
    for task, state in units:
        b = backoffs.setdefault((name, task), Backoff(base_s, cap_s))
        if state == "FAILED":
            if b.ready(now):
                out.append(Action("restart_connector" if task is None else "restart_task", name, task))
                b.failed(now)
        elif state == "RUNNING" and b.failures and now >= b.next_at + cap_s:
            b.reset()  # stayed up for a while: the next failure starts from the base delay again
    return out


@dataclass
class ConnectorView:
    name: str
    applied: str = "pending"  # created | updated | unchanged | error
    state: str = "UNKNOWN"
    tasks: dict[int, str] = field(default_factory=dict)
    trace: str | None = None
    restarts: int = 0

    @property
    def healthy(self) -> bool:
        return self.state == "RUNNING" and bool(self.tasks) and all(s == "RUNNING" for s in self.tasks.values())


class ConnectSupervisor:
    def __init__(self, connect_url: str, wanted: dict[str, dict[str, str]], metrics: SinkMetrics,
                 base_s: float = 2.0, cap_s: float = 300.0, timeout_s: float = 15.0):
        self.url = connect_url.rstrip("/")
        self.wanted = wanted
        self.metrics = metrics
        self.base_s, self.cap_s = base_s, cap_s
        self.http = httpx.Client(timeout=timeout_s)
        self.backoffs: dict[tuple[str, int | None], Backoff] = {}
        self.view: dict[str, ConnectorView] = {n: ConnectorView(n) for n in wanted}
        self.connect_up = False

    # -- REST -------------------------------------------------------------------------------------------------
    def apply(self, name: str) -> str:
        cfg = self.wanted[name]
        r = self.http.get(f"{self.url}/connectors/{name}/config")
        running = r.json() if r.status_code == 200 else None
        if r.status_code not in (200, 404):
            r.raise_for_status()
        if not cfiles.differs(cfg, running):
            return "unchanged"
        r = self.http.put(f"{self.url}/connectors/{name}/config", json=cfg)
        r.raise_for_status()
        return "created" if r.status_code == 201 else "updated"

    def apply_all(self) -> dict[str, str]:
        out = {}
        for name in self.wanted:
            try:
                out[name] = self.apply(name)
            except httpx.HTTPError as e:
                out[name] = "error"
                log.error("connector_apply_failed", connector=name, error=str(e)[:300])
            self.view[name].applied = out[name]
            if out[name] in ("created", "updated"):
                log.info("connector_applied", connector=name, result=out[name])
        return out

    def status(self, name: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.url}/connectors/{name}/status")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def _restart(self, a: Action) -> None:
        if a.kind == "restart_connector":
            r = self.http.post(f"{self.url}/connectors/{a.connector}/restart",
                               params={"includeTasks": "true", "onlyFailed": "true"})
        else:
            r = self.http.post(f"{self.url}/connectors/{a.connector}/tasks/{a.task}/restart")
        if r.status_code >= 400 and r.status_code != 404:
            r.raise_for_status()
        self.view[a.connector].restarts += 1
        self.metrics.restarts.labels(a.connector, "connector" if a.task is None else "task").inc()
        log.warning("connector_restarted", connector=a.connector, task=a.task,
                    failures=self.backoffs[(a.connector, a.task)].failures)

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        try:
            self.http.get(f"{self.url}/")
        except httpx.HTTPError as e:
            if self.connect_up:
                log.error("connect_unreachable", error=str(e)[:200])
            self.connect_up = False
            self.metrics.connect_up.set(0)
            for v in self.view.values():
                v.state = "UNREACHABLE"
            self._export()
            return
        if not self.connect_up:
            self.apply_all()  # idempotent; also recreates a connector somebody deleted
        self.connect_up = True
        self.metrics.connect_up.set(1)
        for name, v in self.view.items():
            try:
                st = self.status(name)
                if st is None:
                    self._reapply(name)  # deleted behind our back (or never created): put it back
                    continue
                v.state = st.get("connector", {}).get("state", "UNKNOWN")
                v.tasks = {t["id"]: t.get("state", "UNKNOWN") for t in st.get("tasks", [])}
                traces = [t.get("trace") for t in st.get("tasks", []) if t.get("state") == "FAILED"]
                v.trace = (traces[0] or "")[:500] if traces else None
                for a in plan(name, st, self.backoffs, now, self.base_s, self.cap_s):
                    self._restart(a)
            except httpx.HTTPError as e:
                log.error("connector_status_failed", connector=name, error=str(e)[:300])
        self._export()

    def _reapply(self, name: str) -> None:
        try:
            self.view[name].applied = self.apply(name)
        except httpx.HTTPError as e:
            log.error("connector_apply_failed", connector=name, error=str(e)[:300])

    def _export(self) -> None:
        for name, v in self.view.items():
            self.metrics.connector_running.labels(name).set(1 if v.state == "RUNNING" else 0)
            self.metrics.tasks_failed.labels(name).set(sum(1 for s in v.tasks.values() if s == "FAILED"))
            self.metrics.tasks_running.labels(name).set(sum(1 for s in v.tasks.values() if s == "RUNNING"))

    @property
    def healthy(self) -> bool:
        return self.connect_up and all(v.healthy for v in self.view.values())

    def health(self) -> dict[str, Any]:
        return {"connect_up": self.connect_up, "connectors": {
            n: {"applied": v.applied, "state": v.state, "tasks": {str(k): s for k, s in v.tasks.items()},
                "restarts": v.restarts, "trace": v.trace} for n, v in self.view.items()}}

    def delete_all(self) -> None:
        """Remove this supervisor's connectors (tests and `teardown`)."""
        for name in self.wanted:
            self.http.delete(f"{self.url}/connectors/{name}")

    def close(self) -> None:
        self.http.close()
