"""The flows' Prometheus metrics, served by `coinpulse_flows serve` on `host:flows_metrics_port` (`GET /metrics`).

Prefect's runner executes every flow run in a process of its own (spawned by the serve process, gone when the run
ends), so a metric a flow sets (`coinpulse_consumer_records_lost` of the data checks) lives in a process nobody can
scrape. The serve process therefore uses prometheus_client's multiprocess mode: before the first run it points
`PROMETHEUS_MULTIPROC_DIR` at `<state>/flows-metrics/<port>/` (emptied: values start afresh with the process, as
every service's do), which its flow-run processes inherit and write their samples to, and it serves those files.
Gauges that a run sets declare how runs combine (`multiprocess_mode`; `mostrecent`: the last value set, by any run).

One file per metric type per run would pile up (a data-checks run every 15 minutes), so at each scrape the files of
runs that have ended are merged into one per type (`<type>_0.db`): counters and histograms summed, `mostrecent`
gauges by their newest value, `max` / `min` / `sum` gauges likewise, `all` gauges by the newest file; `live*`
gauges of ended runs are dropped, as prometheus_client's `mark_process_dead` does.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from coinpulse_common.logging import get_logger
from coinpulse_common.paths import state_dir
from coinpulse_common.proc import alive

from coinpulse_flows.settings import FlowSettings

log = get_logger("coinpulse.flows.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MERGED_PID = 0  # the file ended runs are merged into (never a live process's)
_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")


def metrics_dir(port: int) -> Path:
    return state_dir() / "flows-metrics" / str(port)


def _combine(typ: str, old: tuple[float, float], new: tuple[float, float]) -> tuple[float, float]:
    """Two samples (value, timestamp) of one key from two ended runs, `new` from the later file."""
    if typ in ("counter", "histogram", "summary", "gauge_sum"):
        return old[0] + new[0], max(old[1], new[1])
    if typ == "gauge_mostrecent":
        return new if new[1] >= old[1] else old
    if typ == "gauge_max":
        return max(old, new)
    if typ == "gauge_min":
        return min(old, new)
    return new  # gauge_all: the later run's


def compact(path: Path) -> int:
    """Merge the files of ended runs into one per type (see the module docstring); returns how many it removed."""
    from prometheus_client.mmap_dict import MmapedDict

    ended: dict[str, list[Path]] = {}
    for f in path.glob("*.db"):
        m = _FILE.match(f.name)
        if m is None:
            continue
        typ, pid = m.group(1), int(m.group(2))
        if pid != MERGED_PID and alive(pid):
            continue
        ended.setdefault(typ, []).append(f)
    removed = 0
    for typ, files in ended.items():
        merged = path / f"{typ}_{MERGED_PID}.db"
        if typ.startswith("gauge_live"):  # a live gauge only counts while its process runs
            for f in files:
                f.unlink(missing_ok=True)
                removed += 1
            continue
        sources = [f for f in files if f != merged]
        if not sources:
            continue
        values: dict[str, tuple[float, float]] = {}
        for f in sorted(files, key=lambda f: (f != merged, f.stat().st_mtime_ns)):  # the merged file first
            for key, value, ts, _ in MmapedDict.read_all_values_from_file(str(f)):
                values[key] = _combine(typ, values[key], (value, ts)) if key in values else (value, ts)
        tmp = path / f"{merged.name}.tmp"  # not *.db: never read half-written
        tmp.unlink(missing_ok=True)
        out = MmapedDict(str(tmp))
        try:
            for key, (value, ts) in values.items():
                out.write_value(key, value, ts)
        finally:
            out.close()
        os.replace(tmp, merged)
        for f in sources:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


class FlowRunsCollector:
    """The samples every flow run of this serve process wrote, ended runs merged first."""

    def __init__(self, path: Path):
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self._mp = MultiProcessCollector(None, path=str(path))
        self._lock = threading.Lock()  # one scrape merges and reads at a time

    def collect(self) -> Iterable:
        with self._lock:
            compact(self.path)
            return list(self._mp.collect())


def start(s: FlowSettings) -> Path | None:
    """In the serve process, before any flow run: the multiprocess directory, and the HTTP server on a daemon thread.
    Returns the directory (None when `flows_metrics_port` is 0). A port in use fails here, saying which."""
    port = s.flows_metrics_port
    if not port:
        log.info("flows_metrics_disabled", reason="flows_metrics_port=0")
        return None
    from prometheus_client import CollectorRegistry, start_http_server

    path = metrics_dir(port)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by every flow-run process spawned from here on
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowRunsCollector(path))
    try:
        start_http_server(port, addr=s.host, registry=registry)
    except OSError as e:
        raise OSError(e.errno, f"flows metrics: cannot listen on {s.host}:{port} (COINPULSE_FLOWS_METRICS_PORT; "
                               f"0 disables): {e.strerror}") from e
    log.info("flows_metrics_serving", url=f"http://{s.host}:{port}/metrics", dir=str(path))
    return path
