"""The metrics and health server (coinpulse_common.serve) on real sockets, port 0: what each path answers, that a
bad client or a failing health check does not stop it, and that stop() frees the port."""

import http.client
import json
import socket

import pytest
from coinpulse_common.serve import MetricsServer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

pytestmark = pytest.mark.unit


def get(port: int, path: str) -> tuple[int, str, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        c.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    Counter("coinpulse_serve_test_hits", "hits", ["kind"], registry=r).labels("a").inc(3)
    return r


@pytest.fixture
def state() -> dict:
    return {"ok": True, "raise": False}


@pytest.fixture
def server(registry, state):
    def check():
        if state["raise"]:
            raise RuntimeError("database gone")
        return state["ok"], {"ok": state["ok"], "reason": None if state["ok"] else "not ready", "n": 1.5}

    srv = MetricsServer("test", check, registry=registry)
    srv.start()
    yield srv
    srv.stop()


def test_metrics_is_the_given_registrys_text(server):
    code, ctype, body = get(server.port, "/metrics")
    assert (code, ctype) == (200, CONTENT_TYPE_LATEST)
    assert 'coinpulse_serve_test_hits_total{kind="a"} 3.0' in body.decode()
    assert get(server.port, "/metrics?name[]=x")[0] == 200  # a query string is ignored


def test_metrics_defaults_to_the_global_registry():
    Counter("coinpulse_serve_test_global", "a counter in the global registry").inc()
    srv = MetricsServer("global")
    try:
        assert "coinpulse_serve_test_global_total 1.0" in get(srv.start(), "/metrics")[2].decode()
    finally:
        srv.stop()


def test_health_is_200_when_ok_and_503_with_the_body_when_not(server, state):
    code, ctype, body = get(server.port, "/health")
    assert (code, ctype) == (200, "application/json") and json.loads(body) == {"ok": True, "reason": None, "n": 1.5}
    state["ok"] = False
    code, _, body = get(server.port, "/health")
    assert code == 503 and json.loads(body)["reason"] == "not ready"


def test_a_failing_health_check_is_a_500_with_the_error_and_the_server_goes_on(server, state):
    state["raise"] = True
    code, _, body = get(server.port, "/health")
    assert code == 500 and json.loads(body) == {"ok": False, "reason": "the health check failed: RuntimeError: "
                                                                         "database gone"}
    state["raise"] = False
    assert get(server.port, "/health")[0] == 200


@pytest.mark.parametrize("path", ["/", "/healthz", "/health/x", "/metricsx", "/favicon.ico"])
def test_any_other_path_is_404(server, path):
    code, _, body = get(server.port, path)
    assert code == 404 and b"/metrics or /health" in body


def test_health_is_404_without_a_health_callable(registry):
    srv = MetricsServer("no-health", registry=registry)
    try:
        port = srv.start()
        assert get(port, "/health")[0] == 404 and get(port, "/metrics")[0] == 200
    finally:
        srv.stop()


def test_a_garbage_or_vanishing_client_does_not_stop_the_server(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"\x00\xff not http at all\r\n\r\n")
        reply = b"".join(iter(lambda: s.recv(4096), b""))  # until the server closes
        assert b"400" in reply
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /metr")  # hangs up mid-request
    assert get(server.port, "/metrics")[0] == 200


def test_binds_loopback_by_default_and_start_returns_the_ephemeral_port(server):
    assert server.server_address[0] == "127.0.0.1" and server.port > 0
    assert server.start() == server.port  # a second start is a no-op


def test_a_port_in_use_raises_and_stop_frees_the_port(registry):
    first = MetricsServer("first", registry=registry)
    port = first.start()
    taken = MetricsServer("second", registry=registry, port=port)
    with pytest.raises(OSError):
        taken.start()
    first.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    again = MetricsServer("again", registry=registry, port=port)
    try:
        assert again.start() == port and get(port, "/metrics")[0] == 200
    finally:
        again.stop()
