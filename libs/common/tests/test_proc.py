"""Process control: alive/zombie detection and stopping a whole process group, on real processes."""

import signal
import subprocess
import sys
import time

import psutil
import pytest
from coinpulse_common.proc import alive, stop_group

pytestmark = pytest.mark.unit


def test_stop_group_stops_the_leader_and_its_children():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); " \
           "print('up', flush=True); time.sleep(600)"
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    child = psutil.Process(p.pid).children()[0].pid
    assert alive(p.pid) and alive(child)
    assert stop_group(p.pid, signal.SIGTERM, timeout=60) is True
    assert not alive(p.pid)
    # the group's straggler got the KILL; its death is asynchronous (a busy machine delivers it later), so wait on
    # the condition, with a deadline (a zombie not yet reaped counts as gone)
    deadline = time.monotonic() + 30
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"child {child} still alive 30 s after the group's SIGKILL"
    p.wait(timeout=30)


def test_a_process_ignoring_term_is_killed_after_the_timeout():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    called = []
    assert stop_group(p.pid, signal.SIGTERM, timeout=0.5, on_timeout=lambda: called.append(1)) is False
    assert called == [1]
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL


def test_a_reaped_or_missing_pid_is_not_alive():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not alive(p.pid)
