"""The ingest's `/metrics` and `/health`, served by the one server of libs/common (`coinpulse_common.serve`).

- `/metrics`: Prometheus text from the custom collector over Stats (its own registry);
- `/health`: the stats snapshot as JSON: 200 while the WebSocket is connected and during the first minute after
  start (still connecting), 503 otherwise. It reads the plain counters only, so it answers without Kafka or Upbit.
Interface: `await start(host, port)`, `await stop()` (the server runs on its own thread, off the event loop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from coinpulse_common.serve import MetricsServer
from prometheus_client import CollectorRegistry

from coinpulse_ingest_upbit.stats import Stats, StatsCollector

STARTING_S = 60.0  # /health says 200 this long after start even while not connected


class HealthServer:
    def __init__(self, stats: Stats):
        self.stats = stats
        self._registry = CollectorRegistry()
        self._registry.register(StatsCollector(stats))
        self._server: MetricsServer | None = None

    def health(self) -> tuple[bool, dict[str, Any]]:
        st = self.stats
        return st.connected or time.time() - st.started_at < STARTING_S, st.snapshot()

    async def start(self, host: str, port: int) -> None:
        server = MetricsServer("ingest-upbit", self.health, host=host, port=port, registry=self._registry)
        server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.stop)

    cleanup = stop  # the name of aiohttp's AppRunner.cleanup, for callers that held the runner
