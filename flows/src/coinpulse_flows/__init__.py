"""coinpulse_flows: Prefect flows for tiering, backups, gold marts, backfill and data checks, and one query over
every storage tier. Importing the package points Prefect at the stack's server, with its API auth (unless
PREFECT_API_URL / PREFECT_API_AUTH_STRING are set)."""

from __future__ import annotations

import os
from pathlib import Path

from coinpulse_common.paths import state_dir
from coinpulse_common.settings import Settings


def _prefect_env() -> None:
    s = Settings()
    os.environ.setdefault("PREFECT_API_URL", s.prefect_api)
    os.environ.setdefault("PREFECT_API_AUTH_STRING", s.prefect_auth())  # the server requires it (basic auth)
    home = Path(os.environ.setdefault("PREFECT_HOME", str(state_dir() / "prefect")))
    home.mkdir(parents=True, exist_ok=True)  # Prefect creates it on import, without parents, and warns if it can't
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


_prefect_env()
