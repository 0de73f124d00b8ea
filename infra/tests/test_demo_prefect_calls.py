"""The demo's Prefect calls: a busy Prefect (429/502/503/504, or a refused connection) is asked again until the
deadline, as Prefect's own client does; any other error is raised at once (unit: the rule, over httpx's mock
transport; the demo e2e runs it against the real server)."""

from __future__ import annotations

import time

import httpx
import pytest
from coinpulse_platform.demo import _prefect_call


def _client(answers: list) -> tuple[httpx.Client, list]:
    calls: list = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return httpx.Response(a, json={"id": "run-1", "name": "demo"})

    return httpx.Client(transport=httpx.MockTransport(handle)), calls


def test_a_busy_prefect_is_asked_again_until_it_answers(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    http, calls = _client([503, httpx.ConnectError("refused"), 502, 201])
    assert _prefect_call(http, "POST", "http://p/api/deployments/x/create_flow_run", time.monotonic() + 60,
                         json={}) == {"id": "run-1", "name": "demo"}
    assert calls == ["POST"] * 4


def test_any_other_error_is_raised_at_once(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    http, calls = _client([404, 201])
    with pytest.raises(httpx.HTTPStatusError):
        _prefect_call(http, "GET", "http://p/api/flow_runs/x", time.monotonic() + 60)
    assert calls == ["GET"]


def test_past_the_deadline_a_busy_prefect_is_an_error_that_says_where_to_look(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    http, _ = _client([503])
    with pytest.raises(RuntimeError, match="still unavailable.*HTTP 503.*logs prefect"):
        _prefect_call(http, "GET", "http://p/api/flow_runs/x", time.monotonic() - 1)
