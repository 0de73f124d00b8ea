"""Ports and HTTP probes for tests and benchmarks."""

from __future__ import annotations

import socket
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick; bind it soon)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 5.0, ok_below: int = 500) -> Any | None:
    """GET `url` and return its JSON body, or None when the server is not (yet) there: a connection error, a
    status >= `ok_below` (default: any 5xx) or a body that is not JSON. For polling a service that is starting."""
    try:
        r = httpx.get(url, timeout=timeout)
        return r.json() if r.status_code < ok_below else None
    except (httpx.HTTPError, ValueError):
        return None
