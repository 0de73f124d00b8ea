"""The JVM artifact fetch: two fetches at once into one folder (the two `make test` sessions on a fresh machine)
run one after the other, and both end with every artifact in place."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from coinpulse_platform import artifacts

pytestmark = pytest.mark.unit


def test_two_fetches_at_once_fetch_one_after_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("COINPULSE_JVM_DIR", str(tmp_path / "jvm"))
    monkeypatch.setenv("COINPULSE_STATE_DIR", str(tmp_path / "state"))
    active, most, fetched = [0], [0], []
    lock = threading.Lock()
    started, waiting = threading.Event(), threading.Event()

    def slow(name: str):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        started.set()
        if not fetched:  # the first download lasts until the second fetch is waiting for the lock
            assert waiting.wait(60), "the second fetch neither waited for the lock nor overlapped"
        with lock:
            active[0] -= 1
        fetched.append(name)

    def copy_deps(profile: str, out: Path, log: Path) -> None:
        slow(profile)
        (out / f"{profile}.jar").write_text("x")

    def copy_artifact(coord: str, tmp: Path, log: Path) -> Path:
        slow(coord)
        tmp.mkdir(parents=True, exist_ok=True)
        f = tmp / coord.split(":")[1]
        f.write_text("x")
        return f

    def extract(archive: Path, dest: Path) -> None:
        assert archive.is_file(), f"{archive} was taken away by the other fetch"
        (dest / "quarkus-app").mkdir(exist_ok=True)
        (dest / "quarkus-app" / "quarkus-run.jar").write_text("x")

    monkeypatch.setattr(artifacts, "_copy_deps", copy_deps)
    monkeypatch.setattr(artifacts, "_copy_artifact", copy_artifact)
    monkeypatch.setattr(artifacts, "_extract", extract)
    said: list[str] = []
    results, errors = [], []

    def progress(message: str) -> None:
        said.append(message)
        if "another process is fetching" in message:
            waiting.set()

    def run():
        try:
            results.append(artifacts.ensure(progress))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    first = threading.Thread(target=run)
    first.start()
    assert started.wait(30), "the first fetch never started"
    second = threading.Thread(target=run)
    second.start()
    first.join(60)
    second.join(60)
    assert errors == [] and len(results) == 2
    assert most[0] == 1, "two fetches ran at the same time"
    assert len(fetched) == 5  # each artifact once: the second found them complete
    assert any("another process is fetching" in m for m in said)
    assert all(r["s3proxy"].is_file() for r in results)


def test_two_ups_of_one_stack_at_once_start_it_once(tmp_path, monkeypatch):
    """The second `coinpulse up` (the other `make test` session on a fresh clone) waits for the first, instead of
    starting a second broker, registry and Connect on the same ports."""
    from coinpulse_platform.stack import Stack

    monkeypatch.setenv("COINPULSE_STATE_DIR", str(tmp_path / "state"))
    active, most = [0], [0]
    lock = threading.Lock()
    started, waiting = threading.Event(), threading.Event()
    calls: list[int] = []

    def fake_up(self, timeout, only):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        started.set()
        if not calls:  # the first start lasts until the second `up` is waiting
            assert waiting.wait(60), "the second up neither waited nor overlapped"
        calls.append(1)
        with lock:
            active[0] -= 1
        return {}

    monkeypatch.setattr(Stack, "_up", fake_up)

    def progress(message: str) -> None:
        if "another `coinpulse up`" in message:
            waiting.set()

    errors: list[BaseException] = []

    def run():
        try:
            Stack(progress=progress).up()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    first = threading.Thread(target=run)
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=run)
    second.start()
    first.join(90)
    second.join(90)
    assert errors == [] and len(calls) == 2 and most[0] == 1
