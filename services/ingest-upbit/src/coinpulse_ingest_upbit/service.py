"""The ingest service: WebSocket reader → bronze + silver Avro in Kafka, with dedupe and gap backfill.

One asyncio loop. `UpbitIngest` only wires the units together and owns their lifetimes:

- seeding.py: on start, the tail of the trade topic seeds the deduper and the watermarks (a restart doubles nothing
  and pages only its downtime);
- feed.py: the WebSocket connect/subscribe/keepalive/reconnect loop and frame dispatch (the hot path: it only
  parses, dedupes, encodes and hands records to the non-blocking sink);
- emit.py: dedupe, encoding, dead letters, and the un-seen trades that `pending` leaves for backfill;
- rest.py: the rate-limited REST client, the top-N markets, the gap backfill and the start-up history;
- sink.py: the non-blocking producer; a pump task here serves its delivery reports every 20 ms;
- serve.py: `/metrics` and `/health`.

Order on start: seed, warm up the topics' metadata, serve HTTP, resolve the markets, the start-up history (off
unless COINPULSE_INGEST_HISTORY_HOURS), then the feed. A gap backfill runs beside the reader once a connection's
subscription is live (its first frame), and again from the pump whenever a refused trade left a market pending;
a closed connection cancels it (the next connection's gap covers it). With a configured market list the markets
are fixed; otherwise the top N are re-resolved every `top_n_refresh_s` and a change resubscribes.
"""

from __future__ import annotations

import asyncio
import signal

import aiohttp
from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import producer
from coinpulse_common.logging import get_logger
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from coinpulse_ingest_upbit.dedupe import TradeDeduper
from coinpulse_ingest_upbit.emit import SERVICE, Emitter
from coinpulse_ingest_upbit.feed import Feed
from coinpulse_ingest_upbit.rest import Backfill, UpbitRest
from coinpulse_ingest_upbit.seeding import seed_dedupe
from coinpulse_ingest_upbit.serve import HealthServer
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_ingest_upbit.sink import KafkaSink
from coinpulse_ingest_upbit.stats import Stats

__all__ = ["SERVICE", "UpbitIngest", "main"]
log = get_logger("coinpulse.ingest_upbit")


class UpbitIngest:
    def __init__(self, settings: IngestSettings, producer_: Producer | None = None,
                 registry: SchemaRegistryClient | None = None):
        s = self.s = settings
        self.stats = Stats()
        self.dedupe = TradeDeduper(s.dedupe_capacity)
        self.sink = KafkaSink(None, self.stats, s.buffer_max,  # type: ignore[arg-type]
                              lag_topics=frozenset({s.trade_topic, s.ticker_topic, s.orderbook_topic}))
        self.sink.producer = producer_ if producer_ is not None else producer(
            s, on_delivery=self.sink.on_delivery, **{"message.timeout.ms": int(s.ingest_delivery_timeout_s * 1000)})
        out = self.out = Emitter(s, self.stats, self.dedupe, self.sink,
                                 registry if registry is not None else registry_client(s.registry))
        self.sink.on_failed = out.delivery_failed
        self.stop_event = asyncio.Event()
        self.feed = Feed(s, out, s.market_list())
        self.feed.on_live, self.feed.on_down = self._on_live, self._cancel_backfill
        self.rest = UpbitRest(s.upbit_rest_url, self.stats)
        self.backfill = Backfill(s, self.rest, out, lambda: self.feed.markets, self.stop_event)
        self.http_server = HealthServer(self.stats)
        self._backfill_task: asyncio.Task | None = None
        # the names callers and tests use: the units' own objects and methods, not wrappers
        self.enc_trade, self.enc_ticker, self.enc_orderbook = out.enc_trade, out.enc_ticker, out.enc_orderbook
        self.enc_raw, self.enc_dlq = out.enc_raw, out.enc_dlq
        self._pending = out.pending
        self.on_frame = self.feed.on_frame
        self.emit_trade = out.emit_trade
        self.dead_letter = out.dead_letter
        self.history = self.backfill.history

    @property
    def markets(self) -> list[str]:
        """The markets subscribed (the feed's; `feed.resubscribe` changes them on a live connection)."""
        return self.feed.markets

    @markets.setter
    def markets(self, markets: list[str]) -> None:
        self.feed.markets = markets

    @property
    def http(self) -> aiohttp.ClientSession | None:
        """The REST session (the caller owns it; `run` opens one)."""
        return self.rest.http

    @http.setter
    def http(self, session: aiohttp.ClientSession | None) -> None:
        self.rest.http = session

    # --- the gap backfill's task ---------------------------------------------------------------------------------
    def _cancel_backfill(self) -> None:
        if self._backfill_task is not None and not self._backfill_task.done():
            self._backfill_task.cancel()

    def _on_live(self) -> None:
        """A connection's first frame: its subscription is live, everything from here on arrives on the socket."""
        self._cancel_backfill()
        self._backfill_task = asyncio.create_task(self.backfill.gaps())

    async def _pump_loop(self) -> None:
        while True:
            self.sink.pump()
            if self._pending and self.feed.live and (  # only once a subscription is live (see _on_live)
                    self._backfill_task is None or self._backfill_task.done()):
                self._backfill_task = asyncio.create_task(self.backfill.gaps())
            await asyncio.sleep(0.02)

    # --- markets -------------------------------------------------------------------------------------------------
    async def resolve_markets(self) -> list[str]:
        return self.s.market_list() or await self.rest.top_markets(self.s.top_n)

    async def _refresh_markets(self) -> None:
        while True:
            await asyncio.sleep(self.s.top_n_refresh_s)
            try:
                new = await self.resolve_markets()
            except RuntimeError as e:
                log.warning("market_refresh_failed", error=str(e))
                continue
            old = self.feed.markets
            if set(new) != set(old):
                log.info("markets_changed", added=sorted(set(new) - set(old)), removed=sorted(set(old) - set(new)))
                self.feed.resubscribe(new)

    # --- lifetime ------------------------------------------------------------------------------------------------
    async def _start_metrics(self) -> HealthServer:
        """Start `/metrics` and `/health` on the configured port; returns the server (`stop()` ends it)."""
        await self.http_server.start(self.s.host, self.s.ingest_metrics_port)
        return self.http_server

    async def run(self) -> None:
        s = self.s
        await asyncio.to_thread(seed_dedupe, s, self.dedupe)
        await asyncio.to_thread(self.sink.warm_up,
                                (s.trade_topic, s.ticker_topic, s.orderbook_topic, s.raw_topic, s.dlq_topic))
        await self._start_metrics()
        tasks = [asyncio.create_task(self._pump_loop())]
        try:
            async with aiohttp.ClientSession() as http:
                self.http = http
                self.markets = await self.resolve_markets()
                if not s.market_list():
                    tasks.append(asyncio.create_task(self._refresh_markets()))
                log.info("markets", markets=self.markets)
                await self.history()  # before the first subscription (off unless COINPULSE_INGEST_HISTORY_HOURS)
                await self.feed.run(http, self.stop_event)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            left = await asyncio.to_thread(self.sink.flush, 30.0)
            log.info("stopped", unflushed=left, **{k: v for k, v in self.stats.snapshot().items()
                                                    if isinstance(v, int) and not isinstance(v, bool)})
            await self.http_server.stop()

    def stop(self) -> None:
        """Ask `run` to end: the feed closes, the sink is flushed (at most 30 s), the HTTP server stops."""
        self.stop_event.set()


async def main(settings: IngestSettings | None = None) -> None:
    svc = UpbitIngest(settings or IngestSettings())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.stop)
    await svc.run()
