"""Process control, once: is a pid alive, signal its process group, stop a group (TERM, wait, KILL), and hold an
exclusive lock between processes (`exclusive`).

The stack supervisor (infra `stack.py`) and the detached services (infra `services.py`) both stop process groups
this way; keeping it here removed the import cycle between those two modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie (a killed child its parent has not reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group led by `pid`, or to `pid` alone if it leads none; a gone pid is no error."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_group(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0,
               on_timeout: Callable[[], None] | None = None) -> bool:
    """Signal the group with `sig`, wait up to `timeout` s for `pid` to exit, then SIGKILL the group (stragglers too).

    Returns True if `pid` exited within the timeout; `on_timeout` is called (e.g. to log) before the kill otherwise.
    """
    signal_group(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    in_time = not alive(pid)
    if not in_time:
        if on_timeout is not None:
            on_timeout()
        signal_group(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
    signal_group(pid, signal.SIGKILL)  # stragglers left in the group
    return in_time


@contextlib.contextmanager
def exclusive(lock_file: Path, progress: Callable[[str], None], waiting: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created if absent) for the block; when another process holds it, say
    `waiting` through `progress`, then wait. The kernel releases a dead process's lock, so a kill -9 leaves none."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
