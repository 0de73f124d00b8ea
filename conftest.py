"""Session fixtures shared by every member's tests.

`stack`: the native stack, started once per test session (or reused when already healthy), bootstrapped with the
declared topics and schemas. Integration tests take it as an argument; unit tests never need it.
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
def stack() -> Settings:
    """The running native stack (its Settings). Started on first use and left running for the next session."""
    if os.environ.get("COINPULSE_TEST_NO_STACK"):
        pytest.fail("this test needs the stack, but COINPULSE_TEST_NO_STACK is set")
    return _ensure_stack()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and keys, so tests never collide."""
    return uuid.uuid4().hex[:10]
