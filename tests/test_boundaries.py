"""The layout's boundaries hold: import-linter's contracts in pyproject.toml (`[tool.importlinter]`) are kept.

Libs never import a service, the flows or the platform; services, flows and the platform never import one another;
no package has an import cycle between its modules. A change that crosses a boundary fails here, so it fails CI.
ruff finds nothing, and mypy (`[tool.mypy]`, strict over the libs' sources) finds no type error.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"an import crosses a boundary (fix the import, or argue the contract):\n{r.stdout}{r.stderr}"
    assert "0 broken" in r.stdout and r.stdout.count("KEPT") >= 5, r.stdout


def test_ruff_finds_nothing():
    """ruff with the project's rules (pyproject.toml `[tool.ruff]`), RUF100 included: no stale `noqa` either."""
    exe = Path(sys.executable).parent / "ruff"
    r = subprocess.run([str(exe), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"ruff found problems (`uv run ruff check --fix .` fixes some):\n{r.stdout}{r.stderr}"


def test_mypy_finds_nothing_in_the_libs():
    """mypy with the project's configuration (pyproject.toml `[tool.mypy]`: its files, strictness and overrides)."""
    exe = Path(sys.executable).parent / "mypy"
    r = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mypy found type errors (fix the annotation or the code):\n{r.stdout}{r.stderr}"
    assert r.stdout.startswith("Success: no issues found"), r.stdout
