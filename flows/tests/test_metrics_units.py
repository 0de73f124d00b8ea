"""The flows' metrics across flow-run processes: what ended runs wrote is merged into one file per type (counters
summed, `mostrecent` gauges by their newest value), a running process's own file is left alone, and the served
values are the same before and after a merge."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from coinpulse_flows import metrics
from prometheus_client import CollectorRegistry, generate_latest

pytestmark = pytest.mark.unit

RUN = """
import sys
from prometheus_client import Counter, Gauge
lost = Gauge("t_records_lost", "lost", ["group"], multiprocess_mode="mostrecent")
runs = Counter("t_runs", "runs")
for pair in sys.argv[1:]:
    group, value = pair.split("=")
    lost.labels(group).set(float(value))
runs.inc()
if sys.stdin.readline() != "end\\n":  # a run still going until the test says "end"
    sys.exit(3)
"""


def _run(path: Path, *pairs: str, keep: bool = False) -> subprocess.Popen:
    """A flow-run-like process writing to `path`; finished unless `keep` (then it waits for "end" on stdin)."""
    p = subprocess.Popen([sys.executable, "-c", RUN, *pairs], env={**os.environ, metrics.MULTIPROC_ENV: str(path)},
                         stdin=subprocess.PIPE, text=True)
    if not keep:
        p.communicate("end\n", timeout=60)
        assert p.returncode == 0
    return p


def _scrape(path: Path) -> dict[str, float]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics.FlowRunsCollector(path))
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in generate_latest(reg).decode().splitlines()
            if line and not line.startswith("#")}


def test_ended_runs_are_merged_into_one_file_per_type_with_the_same_values(tmp_path):
    _run(tmp_path, "a=7", "b=1")
    _run(tmp_path, "a=0")  # the later check: group a caught up; b was not checked again and keeps its value
    assert len(list(tmp_path.glob("*.db"))) == 4  # a counter and a gauge file per run
    got = _scrape(tmp_path)
    assert got == {'t_records_lost{group="a"}': 0.0, 't_records_lost{group="b"}': 1.0, "t_runs_total": 2.0}
    assert sorted(f.name for f in tmp_path.glob("*.db")) == ["counter_0.db", "gauge_mostrecent_0.db"]
    assert _scrape(tmp_path) == got  # merging the merged files changes nothing

    _run(tmp_path, "b=5")
    assert _scrape(tmp_path) == {**got, 't_records_lost{group="b"}': 5.0, "t_runs_total": 3.0}
    assert sorted(f.name for f in tmp_path.glob("*.db")) == ["counter_0.db", "gauge_mostrecent_0.db"]


def test_a_running_process_is_served_and_merged_only_once_it_ended(tmp_path):
    _run(tmp_path, "a=1")
    live = _run(tmp_path, "a=4", keep=True)
    try:
        own = tmp_path / f"gauge_mostrecent_{live.pid}.db"
        deadline = time.monotonic() + 60
        while _scrape(tmp_path).get("t_runs_total") != 2.0:  # the running process has set its values
            assert live.poll() is None and time.monotonic() < deadline, "the running process's samples never appeared"
            time.sleep(0.05)
        assert _scrape(tmp_path)['t_records_lost{group="a"}'] == 4.0 and own.exists()  # served, not merged
    finally:
        live.communicate("end\n", timeout=60)
    assert _scrape(tmp_path) == {'t_records_lost{group="a"}': 4.0, "t_runs_total": 2.0}
    assert not own.exists()


def test_live_gauges_of_ended_runs_are_dropped(tmp_path):
    code = ("from prometheus_client import Gauge; Gauge('t_busy', 'busy', multiprocess_mode='livesum').set(3)")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)},
                   check=True, timeout=60)
    assert list(tmp_path.glob("gauge_livesum_*.db"))
    assert "t_busy" not in " ".join(_scrape(tmp_path)) and not list(tmp_path.glob("*.db"))
