"""The test support itself: waiting, ports and probes, process groups, the in-memory producer, the legacy aliases."""

from __future__ import annotations

import itertools
import os
import socket
import time

import pytest
from coinpulse_common.proc import alive
from coinpulse_testing.kafka import MemoryProducer
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import Procs, kill9, spawn_python, stop, stop_all
from coinpulse_testing.wait import WaitTimeout, wait_for

pytestmark = pytest.mark.unit

# a child that ignores SIGTERM, so only the group's SIGKILL ends it; prints its pid first
STUBBORN_CHILD = ("import os, signal, subprocess, sys, time\n"
                  "c = subprocess.Popen([sys.executable, '-c', "
                  "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
                  "print(c.pid, flush=True)\n"
                  "time.sleep(600)\n")


def test_wait_for_returns_the_first_truthy_value():
    calls = itertools.count()
    assert wait_for(lambda: next(calls) >= 2 and "ready", 10, "the third call", every=0.01) == "ready"


def test_wait_for_names_what_was_awaited_and_evaluates_a_callable_only_on_failure():
    asked = []

    def what() -> str:
        asked.append(1)
        return "the log tail"

    with pytest.raises(WaitTimeout, match=r"timed out after 0.05s waiting for the log tail"):
        wait_for(lambda: None, 0.05, what, every=0.01)
    assert asked == [1]
    assert wait_for(lambda: 1, 1, what) == 1 and asked == [1]
    assert issubclass(WaitTimeout, AssertionError)  # a timeout fails a test, it does not error it


def test_wait_for_asks_once_more_at_the_deadline():
    t0 = time.monotonic()
    assert wait_for(lambda: time.monotonic() - t0 >= 0.2, 0.2, "the deadline", every=5.0)
    assert time.monotonic() - t0 < 2.0  # the last sleep is cut to the deadline


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_get_json_is_none_while_nothing_listens():
    assert get_json(f"http://127.0.0.1:{free_port()}/x", timeout=1) is None


def test_stop_returns_the_exit_code_of_a_graceful_stop(tmp_path):
    p = spawn_python(["-c", "import signal, sys, time\n"
                            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                            "print('up', flush=True)\n"
                            "time.sleep(600)"], tmp_path / "p.log")
    wait_for(lambda: "up" in (tmp_path / "p.log").read_text(), 30, "the child to start", 0.05)
    assert os.getpgid(p.pid) == p.pid  # its own session, so its own group
    assert stop(p, 20) == 0


def test_stop_kills_the_whole_group_after_the_timeout(tmp_path):
    p = spawn_python(["-c", STUBBORN_CHILD], tmp_path / "p.log")
    child = int(wait_for(lambda: (tmp_path / "p.log").read_text().strip(), 30, "the grandchild's pid", 0.05))
    assert alive(child)
    stop_all([p], timeout=0.5)
    assert p.returncode is not None
    wait_for(lambda: not alive(child), 30, "the grandchild to be killed with its group", 0.05)


def test_kill9_kills_the_group(tmp_path):
    p = spawn_python(["-c", STUBBORN_CHILD], tmp_path / "p.log")
    child = int(wait_for(lambda: (tmp_path / "p.log").read_text().strip(), 30, "the grandchild's pid", 0.05))
    kill9(p)
    assert p.returncode == -9
    wait_for(lambda: not alive(child), 30, "the grandchild to be killed with its group", 0.05)


def test_procs_restart_a_killed_service_with_the_same_arguments(tmp_path):
    procs = Procs({**os.environ, "X_GREETING": "hi"}, tmp_path)
    script = "import os, time; print(os.environ['X_GREETING'], os.environ['X_EXTRA'], flush=True); time.sleep(600)"
    try:
        first = procs.start("svc", ["-c", script], {"X_EXTRA": "there"})
        wait_for(lambda: procs.tail("svc").count("hi there") == 1, 30, "the first start", 0.05)
        second = procs.kill9_and_restart("svc")
        assert first.returncode == -9 and second is procs.procs["svc"] and procs.alive("svc")
        wait_for(lambda: procs.tail("svc").count("hi there") == 2, 30, "the restart, same environment", 0.05)
        procs.check()
    finally:
        procs.stop_all(5)
    assert not procs.alive("svc")
    with pytest.raises(RuntimeError, match="svc exited"):
        procs.check()


def test_memory_producer_refuses_like_a_full_queue():
    p = MemoryProducer(capacity=2)
    p.produce("t", b"v1", key=b"k")
    p.produce("t", b"v2")
    with pytest.raises(BufferError):
        p.produce("t", b"v3")
    assert p.records == [("t", b"k", b"v1"), ("t", None, b"v2")]
    assert p.flush() == 0 and p.poll() == 0 and len(p) == 0

