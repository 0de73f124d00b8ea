"""Waiting on a condition, once: poll a predicate until it returns something truthy, or fail naming what was awaited.

No sleep is a synchronisation here: the deadline only bounds a wait on a condition, and it is the caller's to make it
generous (a busy CI machine is slow, a correct system still gets there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold within its deadline (an AssertionError, so a test fails rather than errors)."""


def wait_for(pred: Callable[[], T], timeout: float, what: str | Callable[[], str], every: float = 0.5) -> T:
    """Call `pred` every `every` s until it returns a truthy value, and return that value.

    After `timeout` s raise WaitTimeout("timed out after Ns waiting for WHAT"); `what` may be a callable, evaluated
    only then (e.g. to append the tail of a log). `pred` is always called at least once, and once more after the
    deadline, so a condition that became true during the last sleep is not reported as a timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {_text(what)}")
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))


def _text(what: str | Callable[[], Any]) -> str:
    return str(what()) if callable(what) else what
