"""The ingest service: WebSocket reader → bronze + silver Avro in Kafka, with dedupe and gap backfill.

One asyncio loop. The socket reader only parses, dedupes, encodes and hands records to a non-blocking sink; a pump
task serves Kafka delivery reports; backfill runs beside the reader after every (re)connect.

History from the start (`COINPULSE_INGEST_HISTORY_HOURS` > 0): before the first subscription, every market's past
is paged over `/v1/trades/ticks` (the same rate-limit rules as the gap backfill) back to that many hours, or, for a
market the trade topic already holds, back to its watermark minus the margin only. The pages are held until every
market is fetched, then all markets' trades are produced together in trade-time order, oldest first, and only then
does the WebSocket subscribe. Oldest first and before the live feed, because the candle agent's event time is the
largest trade time of its partition (markets share partitions): trades produced after newer ones (paging goes
newest first, live trades are newer still) would be later than its allowed lateness and dropped as late. The
record of what was done is the trade topic itself: a restart seeds the dedupe and the watermarks from its tail, so
it pages only its own downtime (and a history interrupted while produced, oldest first, resumes where it stopped).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web
from coinpulse_common.avro import registry_client
from coinpulse_common.kafka import consumer, producer
from coinpulse_common.logging import get_logger
from coinpulse_upbit import protocol as P
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from prometheus_client import CollectorRegistry, generate_latest

from coinpulse_ingest_upbit.avro import AvroEncoder
from coinpulse_ingest_upbit.backfill import (
    BackfillPlan,
    delay_before_next,
    history_plan,
    parse_remaining_req,
    reconnect_delay,
)
from coinpulse_ingest_upbit.dedupe import TradeDeduper
from coinpulse_ingest_upbit.markets import select_top_n
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_ingest_upbit.sink import KafkaSink
from coinpulse_ingest_upbit.stats import Stats, StatsCollector

log = get_logger("coinpulse.ingest_upbit")
SERVICE = "ingest-upbit"
_BAD = object()


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
        self.sink.on_failed = self._delivery_failed
        self.max_future_ms = int(s.ingest_max_future_skew_s * 1000)
        reg = registry if registry is not None else registry_client(s.registry)
        w = s.ingest_schema_wait_s
        self.enc_trade = AvroEncoder(reg, s.trade_topic, "trade", w)
        self.enc_ticker = AvroEncoder(reg, s.ticker_topic, "ticker", w)
        self.enc_orderbook = AvroEncoder(reg, s.orderbook_topic, "orderbook", w)
        self.enc_raw = AvroEncoder(reg, s.raw_topic, "raw_frame", w)
        self.enc_dlq = AvroEncoder(reg, s.dlq_topic, "dead_letter", w)
        self.markets: list[str] = s.market_list()
        self.stop_event = asyncio.Event()
        self._resubscribe = asyncio.Event()
        self._pending: dict[str, int | None] = {}  # market -> watermark before its gap, until backfilled
        self._backfill_task: asyncio.Task | None = None
        self._rest_ready: dict[str, float] = {}
        self._keys: dict[str, bytes] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._live = False  # the current connection has delivered a frame: its subscription is in effect
        self.http: aiohttp.ClientSession | None = None

    # --- hot path ----------------------------------------------------------------------------------------------
    def _key(self, market: str) -> bytes:
        k = self._keys.get(market)
        if k is None:
            k = self._keys[market] = market.encode()
        return k

    def dead_letter(self, reason: str, payload: bytes, source: str, key: str | None = None,
                    context: dict[str, str] | None = None) -> None:
        rec = {"service": SERVICE, "reason": reason[:2000], "failed_at": int(time.time() * 1000),
               "source": source, "key": key, "payload": payload, "context": context or {}}
        self.stats.dlq += 1
        self.sink.send(self.s.dlq_topic, (key or "").encode(), self.enc_dlq.encode(rec), rec["failed_at"])
        if self.stats.dlq <= 20 or self.stats.dlq % 1000 == 0:
            log.warning("dead_letter", reason=reason[:200], source=source, total=self.stats.dlq)

    def _delivery_failed(self, msg: Any) -> None:
        """A record Kafka refused for good: a trade is un-seen and its market backfilled, so it comes back."""
        if msg.topic() != self.s.trade_topic:
            return
        try:
            rec = self.enc_trade.decode(msg.value())
        except Exception:  # noqa: BLE001 - not ours to read: nothing to un-see
            return
        self._unsee(rec["market"], rec["sequential_id"], _ms(rec["trade_timestamp"]))

    def _unsee(self, market: str, sid: int, ts: int) -> None:
        self.dedupe.forget(market, sid)
        if market not in self._pending:
            self._pending[market] = ts
        elif self._pending[market] is not None:  # None already means "back as far as the initial window"
            self._pending[market] = min(self._pending[market] or ts, ts)

    def future_trade(self, rec: dict[str, Any], payload: bytes, source: str) -> bool:
        """True (and dead-lettered) when the trade is stamped further ahead of the wall clock than allowed."""
        ahead = rec["trade_timestamp"] - rec["received_at"]
        if ahead <= self.max_future_ms:
            return False
        self.stats.future_trades += 1
        self.dead_letter("future_timestamp", payload, source, rec["market"],
                         {"sequential_id": str(rec["sequential_id"]), "ahead_ms": str(ahead)})
        return True

    def emit_trade(self, rec: dict[str, Any]) -> bool:
        market, sid = rec["market"], rec["sequential_id"]
        if not self.dedupe.add(market, sid, rec["trade_timestamp"]):
            self.stats.duplicates += 1
            return False
        try:
            value = self.enc_trade.encode(rec)
        except Exception:
            self.dedupe.forget(market, sid)
            raise
        return self._produce_seen(market, sid, rec["trade_timestamp"], value, rec["received_at"], rec["backfilled"])

    def _send_trade(self, market: str, sid: int, ts: int, value: bytes, received_at: int, backfilled: bool) -> bool:
        """An already encoded trade: deduped, then produced (as emit_trade)."""
        if not self.dedupe.add(market, sid, ts):
            self.stats.duplicates += 1
            return False
        return self._produce_seen(market, sid, ts, value, received_at, backfilled)

    def _produce_seen(self, market: str, sid: int, ts: int, value: bytes, received_at: int, backfilled: bool) -> bool:
        if self.sink.send(self.s.trade_topic, self._key(market), value, received_at):
            self.stats.trades += 1
            if backfilled:
                self.stats.backfilled += 1
            return True
        # refused by a full buffer: un-see it and let a backfill bring it back
        self._unsee(market, sid, ts)
        return False

    def on_frame(self, data: bytes | str, conn_id: str, seq: int) -> None:
        st = self.stats
        now = time.time()
        ms = int(now * 1000)
        st.frames += 1
        st.last_frame_at = now
        raw = data.encode("utf-8") if isinstance(data, str) else data
        st.frame_bytes += len(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = _BAD
        market = P.market_of(obj) if obj is not _BAD else None
        if self.s.bronze:
            text = data if isinstance(data, str) else raw.decode("utf-8", "replace")
            self.sink.send(self.s.raw_topic, self._key(market) if market else conn_id.encode(),
                           self.enc_raw.encode({"source": "upbit.ws", "connection_id": conn_id, "seq": seq,
                                                "received_at": ms, "payload": text, "market": market,
                                                "url": None}), ms)
        if obj is _BAD:
            self.dead_letter("invalid_json", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})
            return
        items = obj if isinstance(obj, list) else (obj,)
        if not items:
            self.dead_letter("empty_list", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})
            return
        for m in items:
            try:
                self._on_message(m, ms, raw, conn_id, seq)
            except P.FrameError as e:
                self.dead_letter(e.reason, raw, f"upbit.ws/{conn_id}", e.market or market, {"seq": str(seq)})
            except Exception as e:  # noqa: BLE001 - a record that cannot be encoded is a dead letter, not a crash
                self.dead_letter(f"unencodable: {type(e).__name__}: {e}", raw, f"upbit.ws/{conn_id}", market,
                                 {"seq": str(seq)})

    def _on_message(self, m: Any, ms: int, raw: bytes, conn_id: str, seq: int) -> None:
        st = self.stats
        p = P.parse_message(m, ms)
        kind = p.kind
        if kind == P.TRADE:
            if not self.future_trade(p.record, raw, f"upbit.ws/{conn_id}"):  # type: ignore[arg-type]
                self.emit_trade(p.record)  # type: ignore[arg-type]
        elif kind == P.TICKER:
            if self.sink.send(self.s.ticker_topic, self._key(p.market), self.enc_ticker.encode(p.record),
                              ms):
                st.tickers += 1
        elif kind == P.ORDERBOOK:
            if self.sink.send(self.s.orderbook_topic, self._key(p.market),
                              self.enc_orderbook.encode(p.record), ms):
                st.orderbooks += 1
        elif kind == P.STATUS:
            st.status_frames += 1
        else:  # server error frame: our request was refused; keep it, count it, say so
            st.error_frames += 1
            self.dead_letter(f"server_error: {p.detail}", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})

    # --- Kafka -------------------------------------------------------------------------------------------------
    def seed_from_kafka(self, timeout_s: float = 60.0) -> int:
        """Read the tail of the trade topic so trades already in Kafka are known (a restart doubles nothing)."""
        topic = self.s.trade_topic
        c = consumer(f"ingest-upbit-seed-{uuid.uuid4().hex[:8]}", self.s, **{"enable.partition.eof": True})
        de = AvroDeserializer(registry_client(self.s.registry))
        ctx = SerializationContext(topic, MessageField.VALUE)
        n = bad = 0
        try:
            md = c.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None:
                log.warning("seed_topic_missing", topic=topic)
                return 0
            assign, remaining = [], set()
            for pid in md.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=10)
                if hi > lo:
                    assign.append(TopicPartition(topic, pid, max(lo, hi - self.s.seed_tail)))
                    remaining.add(pid)
            if not assign:
                return 0
            c.assign(assign)
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                for msg in c.consume(2000, timeout=1.0):
                    if msg.error():
                        if msg.error().code() == -191:  # _PARTITION_EOF
                            remaining.discard(msg.partition())
                        continue
                    try:
                        rec = de(msg.value(), ctx)
                        self.dedupe.add(rec["market"], rec["sequential_id"], _ms(rec["trade_timestamp"]))
                    except Exception as e:  # noqa: BLE001 - a record this service cannot read must not stop it: count, log
                        bad += 1
                        if bad <= 5:
                            log.warning("seed_unreadable_record", partition=msg.partition(), offset=msg.offset(),
                                        error=str(e)[:200])
                        continue
                    n += 1
            if remaining:
                log.warning("seed_incomplete", partitions=sorted(remaining))
        finally:
            c.close()
        log.info("seeded_dedupe", trades=n, unreadable=bad, markets=len(self.dedupe.markets()))
        return n

    def warm_up(self) -> None:
        """Fetch every output topic's metadata before the first frame, so the first records do not wait for it."""
        s = self.s
        for topic in (s.trade_topic, s.ticker_topic, s.orderbook_topic, s.raw_topic, s.dlq_topic):
            md = self.sink.producer.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None:
                log.warning("topic_missing", topic=topic, error=str(md.error) if md is not None else None)

    async def _pump_loop(self) -> None:
        while True:
            self.sink.pump()
            if self._pending and self._live and (  # only once a subscription is live (see connect_once)
                    self._backfill_task is None or self._backfill_task.done()):
                self._backfill_task = asyncio.create_task(self._backfill(""))
            await asyncio.sleep(0.02)

    # --- REST --------------------------------------------------------------------------------------------------
    async def rest_get(self, path: str, params: dict[str, Any], group: str, tries: int = 10) -> Any:
        """GET a REST endpoint honouring Remaining-Req, 429 and 418. None when it keeps failing."""
        assert self.http is not None
        url = self.s.upbit_rest_url.rstrip("/") + path
        for attempt in range(1, tries + 1):
            wait = self._rest_ready.get(group, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with self.http.get(url, params=params, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    body = await r.read()
                    rem = parse_remaining_req(r.headers.get("Remaining-Req"))
                    ra = r.headers.get("Retry-After")
                    retry_after = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
                    delay = delay_before_next(r.status, rem, attempt, retry_after)
                    self._rest_ready[group] = time.monotonic() + delay
                    if r.status in (429, 418):
                        self.stats.rest_throttled += 1
                        log.warning("rest_throttled", status=r.status, wait_s=round(delay, 2), path=path)
                        continue
                    if r.status != 200:
                        log.warning("rest_error", status=r.status, path=path, body=body[:200])
                        self._rest_ready[group] = time.monotonic() + min(10.0, 0.5 * attempt)
                        continue
                    return body, str(r.url)
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning("rest_failed", path=path, error=str(e))
                self._rest_ready[group] = time.monotonic() + min(10.0, 0.5 * attempt)
        return None

    async def _backfill(self, conn_id: str) -> None:
        for market in list(self._pending):
            if market not in self.markets:
                self._pending.pop(market, None)
                continue
            done = await self._backfill_market(market, self._pending[market])
            if done:
                self._pending.pop(market, None)

    async def _fetch_page(self, market: str, plan: BackfillPlan) -> tuple[list[dict[str, Any]], str] | None:
        """One `/v1/trades/ticks` page of the plan: kept in bronze, parsed (bad rows dead-lettered), absorbed by the
        plan; (trades, url), or None when the request keeps failing or the reply is not a list (dead-lettered)."""
        s = self.s
        got = await self.rest_get("/v1/trades/ticks", plan.params(), "trade")
        self.stats.backfill_requests += 1
        if got is None:
            log.warning("backfill_gave_up", market=market, pages=plan.pages)
            return None
        body, url = got
        ms = int(time.time() * 1000)
        req_id = f"rest-{uuid.uuid4().hex[:12]}"
        if s.bronze:
            self.sink.send(s.raw_topic, self._key(market), self.enc_raw.encode(
                {"source": "upbit.rest", "connection_id": req_id, "seq": plan.pages, "received_at": ms,
                 "payload": body.decode("utf-8", "replace"), "market": market, "url": url}), ms)
        try:
            rows = orjson.loads(body)
        except orjson.JSONDecodeError:
            rows = None
        if not isinstance(rows, list):
            self.dead_letter("rest_bad_reply", body, url, market)
            return None
        trades = []
        for row in rows:
            try:
                trades.append(P.parse_rest_trade(row, ms))
            except P.FrameError as e:
                self.dead_letter(e.reason, orjson.dumps(row), url, market)
        plan.absorb(trades)
        return trades, url

    async def history(self, now_ms: int | None = None) -> int:
        """The start-up history (see the module docstring): fetch every market's past back to `now_ms` (default:
        the wall clock) minus COINPULSE_INGEST_HISTORY_HOURS, then produce all of it in trade-time order. Returns
        the trades produced. Runs before the first subscription."""
        s = self.s
        if s.ingest_history_hours <= 0:
            return 0
        t0 = time.monotonic()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        held: list[tuple[int, int, str, bytes, int]] = []  # (trade time, sid, market, Avro value, received_at)
        requests0 = self.stats.backfill_requests
        for market in self.markets:
            if self.stop_event.is_set():
                return 0
            plan = history_plan(market, self.dedupe.watermark(market), now, s.ingest_history_hours,
                                margin_ms=int(s.backfill_margin_s * 1000), max_pages=s.ingest_history_max_pages)
            floor, n = plan.floor_ms or 0, 0
            while not plan.done:
                page = await self._fetch_page(market, plan)
                if page is None:  # left to the gap backfill after the first connect (newest first, maybe late)
                    break
                trades, url = page
                for rec in trades:
                    ts = rec["trade_timestamp"]
                    if ts < floor or self.dedupe.seen(market, rec["sequential_id"]):
                        continue
                    if self.future_trade(rec, orjson.dumps(rec), url):
                        continue
                    try:
                        value = self.enc_trade.encode(rec)
                    except Exception as e:  # noqa: BLE001 - a record that cannot be encoded is a dead letter
                        self.dead_letter(f"unencodable: {type(e).__name__}: {e}", orjson.dumps(rec), url, market)
                        continue
                    held.append((ts, rec["sequential_id"], market, value, rec["received_at"]))
                    n += 1
            if plan.truncated:
                self.stats.backfill_truncated += 1
                log.warning("history_truncated", market=market, pages=plan.pages,
                            oldest=plan.oldest_ms, wanted_from=plan.stop_before_ms)
            log.info("history_fetched", market=market, trades=n, pages=plan.pages,
                     since_watermark=self.dedupe.watermark(market) is not None)
        fetched_s = time.monotonic() - t0
        held.sort(key=lambda h: (h[0], h[1]))
        produced = 0
        for i, (ts, sid, market, value, received_at) in enumerate(held):
            if i % 2000 == 0:  # let the pump move held records into librdkafka and serve delivery reports
                # the pump task drains the held records; no event tells when they drop below half the buffer
                while len(self.sink.pending) > s.buffer_max // 2 and not self.stop_event.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if self.stop_event.is_set():
                    break
                await asyncio.sleep(0)
            if self._send_trade(market, sid, ts, value, received_at, True):
                produced += 1
        self.stats.history_trades += produced
        log.info("history_done", trades=produced, markets=len(self.markets), hours=s.ingest_history_hours,
                 requests=self.stats.backfill_requests - requests0, fetch_s=round(fetched_s, 1),
                 total_s=round(time.monotonic() - t0, 1))
        return produced

    async def _backfill_market(self, market: str, watermark: int | None) -> bool:
        s = self.s
        plan = BackfillPlan(market, watermark, margin_ms=int(s.backfill_margin_s * 1000),
                            initial_ms=int(s.backfill_initial_s * 1000), max_pages=s.backfill_max_pages)
        found = 0
        while not plan.done:
            page = await self._fetch_page(market, plan)
            if page is None:
                return False
            trades, url = page
            for rec in trades:
                if self.future_trade(rec, orjson.dumps(rec), url):
                    continue
                if self.emit_trade(rec):
                    found += 1
        if plan.truncated:
            self.stats.backfill_truncated += 1
            log.warning("backfill_truncated", market=market, pages=plan.pages)
        if found:
            log.info("backfilled", market=market, trades=found, pages=plan.pages)
        return True

    async def resolve_markets(self) -> list[str]:
        if self.s.market_list():
            return self.s.market_list()
        got = await self.rest_get("/v1/ticker/all", {"quote_currencies": "KRW"}, "ticker")
        if got is None:
            raise RuntimeError("cannot resolve the top-N markets: /v1/ticker/all keeps failing")
        return select_top_n(orjson.loads(got[0]), self.s.top_n)

    async def _refresh_markets(self) -> None:
        while True:
            await asyncio.sleep(self.s.top_n_refresh_s)
            try:
                new = await self.resolve_markets()
            except RuntimeError as e:
                log.warning("market_refresh_failed", error=str(e))
                continue
            if set(new) != set(self.markets):
                log.info("markets_changed", added=sorted(set(new) - set(self.markets)),
                         removed=sorted(set(self.markets) - set(new)))
                self.markets = new
                self._resubscribe.set()

    # --- WebSocket ---------------------------------------------------------------------------------------------
    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.s.keepalive_s)
            await ws.send_str("PING")

    async def _watch_resubscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await self._resubscribe.wait()
        self._resubscribe.clear()
        await ws.close()

    async def connect_once(self) -> int:
        """One connection: subscribe, read until it closes. Returns frames read."""
        assert self.http is not None
        conn_id = uuid.uuid4().hex[:12]
        for m in self.markets:  # the gap starts now; remember each market's watermark until it is backfilled
            if m not in self._pending:
                self._pending[m] = self.dedupe.watermark(m)
        frames = 0
        async with self.http.ws_connect(self.s.upbit_ws_url, autoping=True, max_msg_size=0,
                                        timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            self._ws = ws
            self.stats.connected = True
            self.stats.connections += 1
            log.info("connected", connection_id=conn_id, markets=len(self.markets))
            await ws.send_str(P.subscribe_request(str(uuid.uuid4()), self.markets, self.s.ws_format,
                                                  self.s.orderbook_depth).decode())
            helpers = [asyncio.create_task(self._keepalive(ws)), asyncio.create_task(self._watch_resubscribe(ws))]
            on_frame = self.on_frame
            try:
                async for msg in ws:
                    t = msg.type
                    if t is WSMsgType.BINARY or t is WSMsgType.TEXT:
                        frames += 1
                        on_frame(msg.data, conn_id, frames)
                        if frames == 1:  # subscription is live: everything from here on arrives on the socket
                            self._live = True
                            if self._backfill_task is not None and not self._backfill_task.done():
                                self._backfill_task.cancel()
                            self._backfill_task = asyncio.create_task(self._backfill(conn_id))
                    elif t is WSMsgType.ERROR:
                        log.warning("ws_error", connection_id=conn_id, error=str(ws.exception()))
                        break
            finally:
                self.stats.connected = False
                self._live = False
                self._ws = None
                for h in helpers:
                    h.cancel()
                if self._backfill_task is not None and not self._backfill_task.done():
                    self._backfill_task.cancel()
                log.info("disconnected", connection_id=conn_id, frames=frames, close_code=ws.close_code)
        return frames

    async def run(self) -> None:
        s = self.s
        await asyncio.to_thread(self.seed_from_kafka)
        await asyncio.to_thread(self.warm_up)
        metrics = await self._start_metrics()
        tasks = [asyncio.create_task(self._pump_loop())]
        try:
            async with aiohttp.ClientSession() as http:
                self.http = http
                self.markets = await self.resolve_markets()
                if not s.market_list():
                    tasks.append(asyncio.create_task(self._refresh_markets()))
                log.info("markets", markets=self.markets)
                await self.history()  # before the first subscription (off unless COINPULSE_INGEST_HISTORY_HOURS)
                attempt = 0
                while not self.stop_event.is_set():
                    conn = asyncio.create_task(self.connect_once())
                    stopper = asyncio.create_task(self.stop_event.wait())
                    await asyncio.wait({conn, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if not conn.done():
                        conn.cancel()
                        await asyncio.gather(conn, return_exceptions=True)
                        break
                    frames = 0
                    try:
                        frames = conn.result()
                    except (aiohttp.ClientError, OSError, TimeoutError) as e:
                        log.warning("connect_failed", error=str(e), url=s.upbit_ws_url)
                    except Exception:  # one bad connection must not end the service; back off and retry
                        log.exception("connection_crashed", url=s.upbit_ws_url)
                    if self.stop_event.is_set():
                        break
                    attempt = 1 if frames else attempt + 1
                    self.stats.reconnects += 1
                    delay = reconnect_delay(attempt, s.reconnect_base_s, s.reconnect_cap_s)
                    try:
                        await asyncio.wait_for(self.stop_event.wait(), delay)
                    except TimeoutError:
                        pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            left = await asyncio.to_thread(self.sink.flush, 30.0)
            log.info("stopped", unflushed=left, **{k: v for k, v in self.stats.snapshot().items()
                                                    if isinstance(v, int) and not isinstance(v, bool)})
            await metrics.cleanup()

    async def _start_metrics(self) -> web.AppRunner:
        reg = CollectorRegistry()
        reg.register(StatsCollector(self.stats))

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(reg), content_type="text/plain")

        async def health(_: web.Request) -> web.Response:
            snap = self.stats.snapshot()
            ok = self.stats.connected or time.time() - self.stats.started_at < 60
            return web.json_response(snap, status=200 if ok else 503)

        app = web.Application()
        app.add_routes([web.get("/metrics", metrics), web.get("/health", health)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.s.host, self.s.ingest_metrics_port).start()
        return runner


def _ms(v: Any) -> int:
    if isinstance(v, int):
        return v
    return int(v.timestamp() * 1000)  # fastavro/confluent decode timestamp-millis to datetime


async def main(settings: IngestSettings | None = None) -> None:
    svc = UpbitIngest(settings or IngestSettings())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.stop_event.set)
    await svc.run()
