"""`python -m coinpulse_candle_agent` (or `coinpulse run candle-agent`): one Faust worker."""

from __future__ import annotations

import faust
from coinpulse_common.logging import configure

from coinpulse_candle_agent.app import CandleAgent
from coinpulse_candle_agent.settings import CandleSettings


def main() -> None:
    s = CandleSettings()
    configure()
    if s.candle_uvloop:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    agent = CandleAgent(s)
    faust.Worker(agent.app, loglevel=s.log_level.lower()).execute_from_commandline()


if __name__ == "__main__":
    main()
