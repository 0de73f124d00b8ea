"""Everything the ingest asks Upbit's REST API: a rate-limited client, the top-N markets, and the paging runs over
`/v1/trades/ticks` (the gap backfill after every (re)connect and the start-up history).

The client keeps one "ready at" time per Remaining-Req group: a reply whose `sec` is 0 holds the group for the next
second, a 429 backs off exponentially, a 418 waits Retry-After (the rules are pure code in backfill.py). Every page
is kept in bronze as received, its rows parsed (a bad row is a dead letter) and absorbed by the paging plan
(backfill.py); every trade found goes through the same emitter (emit.py) as the live stream, so the overlap is
dropped by the deduper and only the gap is produced, marked BACKFILL.

History from the start (`COINPULSE_INGEST_HISTORY_HOURS` > 0): before the first subscription, every market's past
is paged back to that many hours, or, for a market the trade topic already holds, back to its watermark minus the
margin only. The pages are held until every market is fetched, then all markets' trades are produced together in
trade-time order, oldest first, and only then does the WebSocket subscribe. Oldest first and before the live feed,
because the candle agent's event time is the largest trade time of its partition (markets share partitions):
trades produced after newer ones (paging goes newest first, live trades are newer still) would be later than its
allowed lateness and dropped as late. The record of what was done is the trade topic itself: a restart seeds the
dedupe and the watermarks from its tail (seeding.py), so it pages only its own downtime (and a history interrupted
while produced, oldest first, resumes where it stopped).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from coinpulse_common.logging import get_logger
from coinpulse_upbit import protocol as P

from coinpulse_ingest_upbit.backfill import BackfillPlan, delay_before_next, history_plan, parse_remaining_req
from coinpulse_ingest_upbit.emit import Emitter
from coinpulse_ingest_upbit.markets import select_top_n
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_ingest_upbit.stats import Stats

log = get_logger("coinpulse.ingest_upbit.rest")


class UpbitRest:
    """GETs against the REST base URL over the session in `http` (set by the caller, who owns its lifetime)."""

    def __init__(self, base_url: str, stats: Stats):
        self.base_url = base_url.rstrip("/")
        self.stats = stats
        self.http: aiohttp.ClientSession | None = None
        self._ready: dict[str, float] = {}  # Remaining-Req group -> monotonic time of its next allowed request

    async def get(self, path: str, params: dict[str, Any], group: str, tries: int = 10) -> Any:
        """GET a REST endpoint honouring Remaining-Req, 429 and 418: (body, url), or None when it keeps failing."""
        assert self.http is not None
        url = self.base_url + path
        for attempt in range(1, tries + 1):
            wait = self._ready.get(group, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with self.http.get(url, params=params, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    body = await r.read()
                    rem = parse_remaining_req(r.headers.get("Remaining-Req"))
                    ra = r.headers.get("Retry-After")
                    retry_after = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
                    delay = delay_before_next(r.status, rem, attempt, retry_after)
                    self._ready[group] = time.monotonic() + delay
                    if r.status in (429, 418):
                        self.stats.rest_throttled += 1
                        log.warning("rest_throttled", status=r.status, wait_s=round(delay, 2), path=path)
                        continue
                    if r.status != 200:
                        log.warning("rest_error", status=r.status, path=path, body=body[:200])
                        self._ready[group] = time.monotonic() + min(10.0, 0.5 * attempt)
                        continue
                    return body, str(r.url)
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning("rest_failed", path=path, error=str(e))
                self._ready[group] = time.monotonic() + min(10.0, 0.5 * attempt)
        return None

    async def top_markets(self, n: int) -> list[str]:
        """The top `n` KRW markets by 24-hour trade value (`/v1/ticker/all`); RuntimeError when it keeps failing."""
        got = await self.get("/v1/ticker/all", {"quote_currencies": "KRW"}, "ticker")
        if got is None:
            raise RuntimeError("cannot resolve the top-N markets: /v1/ticker/all keeps failing")
        return select_top_n(orjson.loads(got[0]), n)


class Backfill:
    """The paging runs: `gaps()` pages every market in `out.pending`, `history()` the start-up history."""

    def __init__(self, settings: IngestSettings, rest: UpbitRest, out: Emitter, markets: Callable[[], list[str]],
                 stop_event: asyncio.Event):
        self.s = settings
        self.rest = rest
        self.out = out
        self.stats = out.stats
        self.markets = markets  # the markets subscribed now (they change with the top-N refresh)
        self.stop_event = stop_event

    async def gaps(self) -> None:
        pending = self.out.pending
        for market in list(pending):
            if market not in self.markets():
                pending.pop(market, None)
                continue
            done = await self.market(market, pending[market])
            if done:
                pending.pop(market, None)

    async def fetch_page(self, market: str, plan: BackfillPlan) -> tuple[list[dict[str, Any]], str] | None:
        """One `/v1/trades/ticks` page of the plan: kept in bronze, parsed (bad rows dead-lettered), absorbed by the
        plan; (trades, url), or None when the request keeps failing or the reply is not a list (dead-lettered)."""
        s, out = self.s, self.out
        got = await self.rest.get("/v1/trades/ticks", plan.params(), "trade")
        self.stats.backfill_requests += 1
        if got is None:
            log.warning("backfill_gave_up", market=market, pages=plan.pages)
            return None
        body, url = got
        ms = int(time.time() * 1000)
        req_id = f"rest-{uuid.uuid4().hex[:12]}"
        if s.bronze:
            out.sink.send(s.raw_topic, out.key(market), out.enc_raw.encode(
                {"source": "upbit.rest", "connection_id": req_id, "seq": plan.pages, "received_at": ms,
                 "payload": body.decode("utf-8", "replace"), "market": market, "url": url}), ms)
        try:
            rows = orjson.loads(body)
        except orjson.JSONDecodeError:
            rows = None
        if not isinstance(rows, list):
            out.dead_letter("rest_bad_reply", body, url, market)
            return None
        trades = []
        for row in rows:
            try:
                trades.append(P.parse_rest_trade(row, ms))
            except P.FrameError as e:
                out.dead_letter(e.reason, orjson.dumps(row), url, market)
        plan.absorb(trades)
        return trades, url

    async def market(self, market: str, watermark: int | None) -> bool:
        """One market's gap, paged back to its watermark minus the margin; False when the requests keep failing."""
        s, out = self.s, self.out
        plan = BackfillPlan(market, watermark, margin_ms=int(s.backfill_margin_s * 1000),
                            initial_ms=int(s.backfill_initial_s * 1000), max_pages=s.backfill_max_pages)
        found = 0
        while not plan.done:
            page = await self.fetch_page(market, plan)
            if page is None:
                return False
            trades, url = page
            for rec in trades:
                if out.future_trade(rec, orjson.dumps(rec), url):
                    continue
                if out.emit_trade(rec):
                    found += 1
        if plan.truncated:
            self.stats.backfill_truncated += 1
            log.warning("backfill_truncated", market=market, pages=plan.pages)
        if found:
            log.info("backfilled", market=market, trades=found, pages=plan.pages)
        return True

    async def history(self, now_ms: int | None = None) -> int:
        """The start-up history (see the module docstring): fetch every market's past back to `now_ms` (default:
        the wall clock) minus COINPULSE_INGEST_HISTORY_HOURS, then produce all of it in trade-time order. Returns
        the trades produced. Runs before the first subscription."""
        s, out = self.s, self.out
        if s.ingest_history_hours <= 0:
            return 0
        t0 = time.monotonic()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        held: list[tuple[int, int, str, bytes, int]] = []  # (trade time, sid, market, Avro value, received_at)
        requests0 = self.stats.backfill_requests
        for market in self.markets():
            if self.stop_event.is_set():
                return 0
            plan = history_plan(market, out.dedupe.watermark(market), now, s.ingest_history_hours,
                                margin_ms=int(s.backfill_margin_s * 1000), max_pages=s.ingest_history_max_pages)
            floor, n = plan.floor_ms or 0, 0
            while not plan.done:
                page = await self.fetch_page(market, plan)
                if page is None:  # left to the gap backfill after the first connect (newest first, maybe late)
                    break
                trades, url = page
                for rec in trades:
                    ts = rec["trade_timestamp"]
                    if ts < floor or out.dedupe.seen(market, rec["sequential_id"]):
                        continue
                    if out.future_trade(rec, orjson.dumps(rec), url):
                        continue
                    try:
                        value = out.enc_trade.encode(rec)
                    except Exception as e:  # noqa: BLE001 - a record that cannot be encoded is a dead letter
                        out.dead_letter(f"unencodable: {type(e).__name__}: {e}", orjson.dumps(rec), url, market)
                        continue
                    held.append((ts, rec["sequential_id"], market, value, rec["received_at"]))
                    n += 1
            if plan.truncated:
                self.stats.backfill_truncated += 1
                log.warning("history_truncated", market=market, pages=plan.pages,
                            oldest=plan.oldest_ms, wanted_from=plan.stop_before_ms)
            log.info("history_fetched", market=market, trades=n, pages=plan.pages,
                     since_watermark=out.dedupe.watermark(market) is not None)
        fetched_s = time.monotonic() - t0
        held.sort(key=lambda h: (h[0], h[1]))
        produced = 0
        for i, (ts, sid, market, value, received_at) in enumerate(held):
            if i % 2000 == 0:  # let the pump move held records into librdkafka and serve delivery reports
                # the pump task drains the held records; no event tells when they drop below half the buffer
                while len(out.sink.pending) > s.buffer_max // 2 and not self.stop_event.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if self.stop_event.is_set():
                    break
                await asyncio.sleep(0)
            if out.send_trade(market, sid, ts, value, received_at, True):
                produced += 1
        self.stats.history_trades += produced
        log.info("history_done", trades=produced, markets=len(self.markets()), hours=s.ingest_history_hours,
                 requests=self.stats.backfill_requests - requests0, fetch_s=round(fetched_s, 1),
                 total_s=round(time.monotonic() - t0, 1))
        return produced
