"""The pytest plugin of the workspace (registered by the root conftest.py with `pytest_plugins`): session fixtures
shared by every member's tests.

`stack`: the native stack, started once per test session (or reused when already healthy), bootstrapped with the
declared topics and schemas. Integration tests take it as an argument; unit tests never need it.
`unique`: a short unique suffix for names. `docker_compose_file`: compose.yaml, for pytest-docker.
"""

from __future__ import annotations

import os
import uuid

import pytest
from coinpulse_common.settings import Settings, get_settings


def _ensure_stack() -> Settings:
    from coinpulse_platform import bootstrap
    from coinpulse_platform.stack import Stack

    s = get_settings()
    st = Stack(s, progress=lambda m: print(f"[stack] {m}", flush=True))
    status = st.status()
    if not all(p["healthy"] for p in status.values()):
        st.up()
    bootstrap.all_(s)
    return s


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    from coinpulse_common.paths import repo_root
    return str(repo_root() / "compose.yaml")


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Settings:
    """The running stack (its Settings), started on first use and left running for the next session.

    Natively by default; with COINPULSE_TEST_STACK=compose on a host with a Docker engine, the same tests run against
    compose.yaml through pytest-docker (same host ports, so the same Settings apply).
    """
    if os.environ.get("COINPULSE_TEST_NO_STACK"):
        pytest.fail("this test needs the stack, but COINPULSE_TEST_NO_STACK is set")
    if os.environ.get("COINPULSE_TEST_STACK") == "compose":
        from coinpulse_platform.stack import Stack
        services = request.getfixturevalue("docker_services")
        s = get_settings()
        st = Stack(s)
        services.wait_until_responsive(check=lambda: all(st.healthy(p)[0] for p in st.parts), timeout=600.0,
                                       pause=2.0)
        return s
    return _ensure_stack()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and keys, so tests never collide."""
    return uuid.uuid4().hex[:10]
