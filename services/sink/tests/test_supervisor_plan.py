"""Restart planning: failed connectors and tasks are restarted with exponential backoff, reset after a healthy spell."""

from __future__ import annotations

import pytest
from coinpulse_sink.supervisor import Action, Backoff, plan

pytestmark = pytest.mark.unit


def _status(conn="RUNNING", *tasks):
    return {"connector": {"state": conn}, "tasks": [{"id": i, "state": s} for i, s in enumerate(tasks)]}


def test_backoff_doubles_and_caps():
    b = Backoff(2.0, 10.0)
    assert [b.failed(0.0) for _ in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_failed_task_is_restarted_then_waits_for_its_backoff():
    bo = {}
    st = _status("RUNNING", "RUNNING", "FAILED")
    assert plan("c", st, bo, 0.0, 2.0, 60.0) == [Action("restart_task", "c", 1)]
    assert plan("c", st, bo, 1.0, 2.0, 60.0) == []  # still inside the 2 s backoff
    assert plan("c", st, bo, 2.0, 2.0, 60.0) == [Action("restart_task", "c", 1)]
    assert plan("c", st, bo, 5.0, 2.0, 60.0) == []  # now 4 s
    assert plan("c", st, bo, 6.0, 2.0, 60.0) == [Action("restart_task", "c", 1)]


def test_failed_connector_is_restarted():
    assert plan("c", _status("FAILED"), {}, 0.0, 1.0, 10.0) == [Action("restart_connector", "c", None)]


def test_running_everything_plans_nothing():
    assert plan("c", _status("RUNNING", "RUNNING"), {}, 0.0, 1.0, 10.0) == []


def test_backoff_resets_after_staying_up_for_the_cap():
    bo = {}
    plan("c", _status("RUNNING", "FAILED"), bo, 0.0, 1.0, 10.0)
    plan("c", _status("RUNNING", "FAILED"), bo, 1.0, 1.0, 10.0)
    assert bo[("c", 0)].failures == 2
    plan("c", _status("RUNNING", "RUNNING"), bo, 5.0, 1.0, 10.0)
    assert bo[("c", 0)].failures == 2  # not up long enough yet
    plan("c", _status("RUNNING", "RUNNING"), bo, 13.0, 1.0, 10.0)
    assert bo[("c", 0)].failures == 0
