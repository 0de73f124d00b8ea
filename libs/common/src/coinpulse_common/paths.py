"""Where things live: the repository root, its schema folder and the git-ignored state folder."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root: COINPULSE_REPO_ROOT, else the first parent holding `schemas/` and `pyproject.toml`."""
    env = os.environ.get("COINPULSE_REPO_ROOT")
    if env:
        return Path(env).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "schemas").is_dir() and (parent / "pyproject.toml").is_file() and (parent / "libs").is_dir():
            return parent
    return Path.cwd()


def schemas_dir() -> Path:
    return repo_root() / "schemas"


def state_dir() -> Path:
    """All runtime state (data, logs, pids, downloaded artifacts): COINPULSE_STATE_DIR or `<repo>/.coinpulse`."""
    env = os.environ.get("COINPULSE_STATE_DIR")
    return Path(env).resolve() if env else repo_root() / ".coinpulse"
