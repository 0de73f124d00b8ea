"""The ingest's HTTP server: `/metrics` (Prometheus text from the custom collector over Stats) and `/health`.

`/health` is the stats snapshot as JSON: 200 while the WebSocket is connected and during the first minute after
start (still connecting), 503 otherwise. It reads the plain counters only, so it answers without Kafka or Upbit.
Interface: `await start(host, port)`, `await stop()`.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from coinpulse_ingest_upbit.stats import Stats, StatsCollector

STARTING_S = 60.0  # /health says 200 this long after start even while not connected


class HealthServer:
    def __init__(self, stats: Stats):
        self.stats = stats
        self._registry = CollectorRegistry()
        self._registry.register(StatsCollector(stats))
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry), content_type="text/plain")

    async def _health(self, _: web.Request) -> web.Response:
        st = self.stats
        ok = st.connected or time.time() - st.started_at < STARTING_S
        return web.json_response(st.snapshot(), status=200 if ok else 503)

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics), web.get("/health", self._health)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    cleanup = stop  # the name of aiohttp's AppRunner.cleanup, for callers that held the runner
