"""stack_root: fresh, reachable by another user, outside pytest's temp folder, old ones pruned."""

import pytest
from coinpulse_testing import stacks

pytestmark = pytest.mark.unit


def test_stack_roots_are_fresh_reachable_and_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(stacks, "state_dir", lambda: tmp_path / "state")
    roots, modes = [], []
    for _ in range(5):
        roots.append(stacks.stack_root("stack-x"))
        modes.append(roots[-1].stat().st_mode)
    assert len(set(roots)) == 5 and all(r.parent == tmp_path / "state" / "test-stacks" for r in roots)
    assert all(m & 0o005 == 0o005 for m in modes)  # others (the stack's postgres user) may list and enter it
    kept = sorted(p.name for p in (tmp_path / "state" / "test-stacks").glob("stack-x-*"))
    assert len(kept) == stacks.KEEP_ROOTS and roots[-1].name in kept
