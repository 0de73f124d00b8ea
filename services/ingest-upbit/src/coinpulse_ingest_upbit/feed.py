"""The WebSocket feed: connect, subscribe, keep alive, read, reconnect; and frame dispatch, the hot path.

Each frame is kept in bronze as received, parsed (libs/upbit's protocol), and each message in it handed to the
emitter (emit.py): a trade deduped and produced, a ticker or order book produced, anything unreadable or a server
error frame dead-lettered. One bad frame never ends the feed, one bad connection never ends the service.

Every (re)connect opens a gap for each market (the emitter's `pending`); the first frame of a connection means its
subscription is live (`on_live`, where the service starts the gap backfill), a closed connection calls `on_down`.
Reconnects back off exponentially with full jitter (backfill.reconnect_delay); a connection that delivered frames
restarts the backoff. `resubscribe(markets)` closes the connection so the next one subscribes the new markets.

Hot path: `on_frame` reads only instance attributes bound once here (no per-frame lookups through other objects).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType
from coinpulse_common.logging import get_logger
from coinpulse_upbit import protocol as P

from coinpulse_ingest_upbit.backfill import reconnect_delay
from coinpulse_ingest_upbit.emit import Emitter
from coinpulse_ingest_upbit.settings import IngestSettings

log = get_logger("coinpulse.ingest_upbit.feed")
_BAD = object()


def _nothing() -> None:
    return None


class Feed:
    def __init__(self, settings: IngestSettings, out: Emitter, markets: list[str]):
        s = self.s = settings
        self.out = out
        self.stats = out.stats
        self.markets = markets
        self.live = False  # the current connection has delivered a frame: its subscription is in effect
        self.on_live: Callable[[], None] = _nothing
        self.on_down: Callable[[], None] = _nothing
        self._resubscribe = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        # the hot path's collaborators, bound once
        self._send = out.sink.send
        self._key = out.key
        self._dead_letter = out.dead_letter
        self._future_trade = out.future_trade
        self._emit_trade = out.emit_trade
        self._enc_raw = out.enc_raw.encode
        self._enc_ticker = out.enc_ticker.encode
        self._enc_orderbook = out.enc_orderbook.encode
        self._bronze = s.bronze
        self._raw_topic, self._ticker_topic, self._orderbook_topic = s.raw_topic, s.ticker_topic, s.orderbook_topic

    def resubscribe(self, markets: list[str]) -> None:
        """Subscribe `markets` from now on: the current connection is closed and the next one subscribes them."""
        self.markets = markets
        self._resubscribe.set()

    # --- frame dispatch (hot path) -------------------------------------------------------------------------------
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
        if self._bronze:
            text = data if isinstance(data, str) else raw.decode("utf-8", "replace")
            self._send(self._raw_topic, self._key(market) if market else conn_id.encode(),
                       self._enc_raw({"source": "upbit.ws", "connection_id": conn_id, "seq": seq,
                                      "received_at": ms, "payload": text, "market": market, "url": None}), ms)
        if obj is _BAD:
            self._dead_letter("invalid_json", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})
            return
        items = obj if isinstance(obj, list) else (obj,)
        if not items:
            self._dead_letter("empty_list", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})
            return
        for m in items:
            try:
                self._on_message(m, ms, raw, conn_id, seq)
            except P.FrameError as e:
                self._dead_letter(e.reason, raw, f"upbit.ws/{conn_id}", e.market or market, {"seq": str(seq)})
            except Exception as e:  # noqa: BLE001 - a record that cannot be encoded is a dead letter, not a crash
                self._dead_letter(f"unencodable: {type(e).__name__}: {e}", raw, f"upbit.ws/{conn_id}", market,
                                  {"seq": str(seq)})

    def _on_message(self, m: Any, ms: int, raw: bytes, conn_id: str, seq: int) -> None:
        st = self.stats
        p = P.parse_message(m, ms)
        kind = p.kind
        if kind == P.TRADE:
            if not self._future_trade(p.record, raw, f"upbit.ws/{conn_id}"):  # type: ignore[arg-type]
                self._emit_trade(p.record)  # type: ignore[arg-type]
        elif kind == P.TICKER:
            if self._send(self._ticker_topic, self._key(p.market), self._enc_ticker(p.record), ms):
                st.tickers += 1
        elif kind == P.ORDERBOOK:
            if self._send(self._orderbook_topic, self._key(p.market), self._enc_orderbook(p.record), ms):
                st.orderbooks += 1
        elif kind == P.STATUS:
            st.status_frames += 1
        else:  # server error frame: our request was refused; keep it, count it, say so
            st.error_frames += 1
            self._dead_letter(f"server_error: {p.detail}", raw, f"upbit.ws/{conn_id}", None, {"seq": str(seq)})

    # --- the connection --------------------------------------------------------------------------------------------
    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self.s.keepalive_s)
            await ws.send_str("PING")

    async def _watch_resubscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await self._resubscribe.wait()
        self._resubscribe.clear()
        await ws.close()

    async def connect_once(self, http: aiohttp.ClientSession) -> int:
        """One connection: subscribe, read until it closes. Returns frames read."""
        conn_id = uuid.uuid4().hex[:12]
        self.out.open_gaps(self.markets)  # the gap starts now
        frames = 0
        async with http.ws_connect(self.s.upbit_ws_url, autoping=True, max_msg_size=0,
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
                            self.live = True
                            self.on_live()
                    elif t is WSMsgType.ERROR:
                        log.warning("ws_error", connection_id=conn_id, error=str(ws.exception()))
                        break
            finally:
                self.stats.connected = False
                self.live = False
                self._ws = None
                for h in helpers:
                    h.cancel()
                self.on_down()
                log.info("disconnected", connection_id=conn_id, frames=frames, close_code=ws.close_code)
        return frames

    async def run(self, http: aiohttp.ClientSession, stop_event: asyncio.Event) -> None:
        """Connect, read, reconnect with backoff, until `stop_event` is set."""
        s = self.s
        attempt = 0
        while not stop_event.is_set():
            conn = asyncio.create_task(self.connect_once(http))
            stopper = asyncio.create_task(stop_event.wait())
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
            if stop_event.is_set():
                break
            attempt = 1 if frames else attempt + 1
            self.stats.reconnects += 1
            delay = reconnect_delay(attempt, s.reconnect_base_s, s.reconnect_cap_s)
            try:
                async with asyncio.timeout(delay):
                    await stop_event.wait()
            except TimeoutError:
                pass
