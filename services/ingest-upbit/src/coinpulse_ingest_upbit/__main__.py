"""`python -m coinpulse_ingest_upbit`: run the Upbit ingest service (settings from COINPULSE_* variables)."""

from __future__ import annotations

import asyncio

from coinpulse_common.logging import configure


def run() -> None:
    configure()
    from coinpulse_ingest_upbit.service import main

    asyncio.run(main())


if __name__ == "__main__":
    run()
