"""aiohttp app: `/websocket/v1` and the REST endpoints the ingest uses, plus `/sim/*` for tests and benchmarks."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from coinpulse_common.logging import get_logger

from coinpulse_sim_upbit.hub import Conn, Hub
from coinpulse_sim_upbit.market import NAMES

log = get_logger("coinpulse.sim_upbit")
STATUS_UP = b'{"status":"UP"}'
TYPES = ("trade", "ticker", "orderbook")


class RequestError(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def parse_request(text: str | bytes) -> tuple[dict[str, set[str]], str, set[str], set[str]]:
    """A subscribe request → (subscriptions by type, format, realtime-only types, snapshot-only types)."""
    try:
        req = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RequestError("WRONG_FORMAT", "request is not JSON") from None
    if not isinstance(req, list) or not all(isinstance(x, dict) for x in req):
        raise RequestError("WRONG_FORMAT", "request must be a JSON array of objects")
    if not any("ticket" in x for x in req):
        raise RequestError("NO_TICKET", "ticket is required")
    subs: dict[str, set[str]] = {}
    fmt = "DEFAULT"
    rt_only: set[str] = set()
    snap_only: set[str] = set()
    for x in req:
        if "format" in x:
            fmt = str(x["format"]).upper()
            if fmt not in ("DEFAULT", "SIMPLE"):
                raise RequestError("INVALID_PARAM", f"unsupported format {fmt}")
        if "type" in x:
            ty = x["type"]
            if ty not in TYPES:
                raise RequestError("INVALID_PARAM", f"unsupported type {ty}")
            codes = x.get("codes")
            if not isinstance(codes, list) or not codes:
                raise RequestError("NO_CODES", "codes are required")
            subs.setdefault(ty, set()).update(str(c).upper().split(".")[0] for c in codes)
            if x.get("is_only_realtime") or x.get("isOnlyRealtime"):
                rt_only.add(ty)
            if x.get("is_only_snapshot") or x.get("isOnlySnapshot"):
                snap_only.add(ty)
    if not subs:
        raise RequestError("NO_TYPE", "type is required")
    return subs, fmt, rt_only, snap_only


class SimServer:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.conn_no = 0
        self.connect_times: deque[float] = deque()
        self.rng = random.Random(hub.seed)
        self.rate: dict[str, deque[float]] = {}
        self.last_429: dict[str, float] = {}
        self.ban_until = 0.0
        self.subscribed = asyncio.Event()

    # --- WebSocket ---------------------------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        hub = self.hub
        now = time.monotonic()
        self.connect_times.append(now)
        while self.connect_times and self.connect_times[0] < now - 1:
            self.connect_times.popleft()
        if len(self.connect_times) > 5:
            hub.stats.connections_over_limit += 1
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        self.conn_no += 1
        hub.stats.connections += 1
        conn: Conn | None = None
        tasks: list[asyncio.Task] = []
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                data = msg.data
                if (data.strip() if isinstance(data, str) else data.strip().decode("utf-8", "replace")) == "PING":
                    await ws.send_bytes(STATUS_UP)
                    continue
                try:
                    subs, fmt, rt_only, snap_only = parse_request(data)
                except RequestError as e:
                    await ws.send_bytes(orjson.dumps({"error": {"name": e.name, "message": str(e)}}))
                    continue
                if conn is not None:  # a new request replaces the whole subscription
                    conn.closed = True
                    hub.conns.discard(conn)
                    for t in tasks:
                        t.cancel()
                    tasks = []
                conn = Conn(self.conn_no, {k: v for k, v in subs.items() if k not in snap_only}, fmt,
                            hub.faults, hub.seed, hub.stats)
                hub.conns.add(conn)
                for ty, codes in subs.items():  # snapshots, queued before any realtime frame
                    if ty in rt_only:
                        continue
                    for code in sorted(codes):
                        ev = hub.latest.get((ty, code))
                        if ev is not None:
                            conn._enqueue(ev.snapshot(fmt))
                tasks.append(asyncio.create_task(self._sender(conn, ws)))
                if hub.faults.disconnect_every_s > 0:
                    tasks.append(asyncio.create_task(self._killer(conn, ws)))
                self.subscribed.set()
        finally:
            if conn is not None:
                conn.closed = True
                conn.drained.set()
                hub.conns.discard(conn)
            for t in tasks:
                t.cancel()
        return ws

    async def _sender(self, conn: Conn, ws: web.WebSocketResponse) -> None:
        stats = self.hub.stats
        q = conn.queue
        every_frames = self.hub.faults.disconnect_every_frames
        try:
            while not conn.closed and not ws.closed:
                if not q:
                    conn.drained.set()
                    conn.wake.clear()
                    if conn.window:
                        try:
                            async with asyncio.timeout(0.2):
                                await conn.wake.wait()
                        except TimeoutError:
                            conn.flush_window()
                    else:
                        await conn.wake.wait()
                    continue
                while q and not conn.closed:
                    await ws.send_bytes(q.popleft())
                    stats.frames_sent += 1
                    conn.sent += 1
                    if every_frames and conn.sent >= every_frames:
                        await self._disconnect(conn, ws)
                        return
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            conn.drained.set()
        if conn.too_slow and not ws.closed:
            stats.slow_client_drops += 1
            self.hub.conns.discard(conn)
            await ws.close(code=1008, message=b"client too slow")

    async def _killer(self, conn: Conn, ws: web.WebSocketResponse) -> None:
        await asyncio.sleep(self.hub.faults.disconnect_every_s)
        await self._disconnect(conn, ws)

    async def _disconnect(self, conn: Conn, ws: web.WebSocketResponse) -> None:
        self.hub.stats.disconnects_forced += 1
        conn.closed = True
        self.hub.conns.discard(conn)
        await ws.close(code=1001, message=b"simulated disconnect")

    # --- REST --------------------------------------------------------------------------------------------------
    def _limit(self, group: str) -> tuple[int, dict[str, str]]:
        """Upbit's per-group limit (10/s): 429 when over, 418 for continuing within 0.5 s of a 429."""
        st = self.hub.stats
        st.rest_requests += 1
        now = time.monotonic()
        if now < self.ban_until:
            st.rest_418 += 1
            return 418, {"Retry-After": f"{self.ban_until - now:.1f}"}
        if now - self.last_429.get(group, -1e9) < 0.5:
            self.ban_until = now + 2.0
            st.rest_418 += 1
            return 418, {"Retry-After": "2"}
        dq = self.rate.setdefault(group, deque())
        while dq and dq[0] < now - 1:
            dq.popleft()
        rate429 = self.hub.faults.rest_429_rate
        if len(dq) >= 10 or (rate429 and self.rng.random() < rate429):
            self.last_429[group] = now
            st.rest_429 += 1
            return 429, {"Remaining-Req": f"group={group}; min=0; sec=0"}
        dq.append(now)
        return 200, {"Remaining-Req": f"group={group}; min=1800; sec={10 - len(dq)}"}

    def _reply(self, status: int, headers: dict[str, str], body: Any) -> web.Response:
        if status != 200:
            body = {"error": {"name": status, "message": "Too many requests" if status == 429 else "Banned"}}
        return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")

    async def market_all(self, request: web.Request) -> web.Response:
        status, headers = self._limit("market")
        rows = [{"market": m, "korean_name": NAMES.get(m, (m, m))[0], "english_name": NAMES.get(m, (m, m))[1],
                 "market_event": {"warning": False, "caution": {}}} for m in self.hub.markets]
        return self._reply(status, headers, rows)

    def _ticker_rows(self, markets: list[str]) -> list[dict[str, Any]]:
        rows = []
        for m in markets:
            t = self.hub.tickers.get(m)
            if t is None:
                hist = self.hub.history.get(m)
                if not hist:
                    continue
                last = hist[-1]
                t = {"trade_price": last["trade_price"], "acc_trade_price_24h": 0.0,
                     "timestamp": last["trade_timestamp"]}
            row = {k: v for k, v in t.items() if k not in ("type", "code", "stream_type")}
            row["market"] = m
            rows.append(row)
        return rows

    async def ticker_all(self, request: web.Request) -> web.Response:
        status, headers = self._limit("ticker")
        quote = request.query.get("quote_currencies", "KRW").upper().split(",")
        markets = [m for m in self.hub.markets if m.split("-")[0] in quote]
        return self._reply(status, headers, self._ticker_rows(markets))

    async def ticker(self, request: web.Request) -> web.Response:
        status, headers = self._limit("ticker")
        markets = [m.strip().upper() for m in request.query.get("markets", "").split(",") if m.strip()]
        return self._reply(status, headers, self._ticker_rows(markets))

    async def trades_ticks(self, request: web.Request) -> web.Response:
        status, headers = self._limit("trade")
        if status != 200:
            return self._reply(status, headers, None)
        q = request.query
        market = q.get("market", "").upper()
        try:
            count = int(q.get("count", "1"))
            cursor = int(q["cursor"]) if q.get("cursor") else None
            days_ago = int(q.get("days_ago") or q.get("daysAgo") or 0)
        except ValueError:
            return web.json_response({"error": {"name": 400, "message": "Invalid parameter. Check the given value!"}},
                                     status=400)
        if not 1 <= count <= 500 or not 0 <= days_ago <= 7:
            return web.json_response({"error": {"name": 400, "message": "Invalid parameter. Check the given value!"}},
                                     status=400)
        page = self.hub.trades_page(market, count, cursor)
        if page is None:
            if market in self.hub.markets:
                page = []
            else:
                return web.json_response({"error": {"name": 404, "message": "Code not found"}}, status=404)
        return self._reply(200, headers, page)

    async def sim_trades(self, request: web.Request) -> web.Response:
        trades = self.hub.all_trades(request.query.get("market"))
        return web.Response(body=orjson.dumps({"count": len(trades), "trades": trades}),
                            content_type="application/json")

    async def sim_stats(self, request: web.Request) -> web.Response:
        d = asdict(self.hub.stats)
        d["clients"] = len(self.hub.conns)
        return web.Response(body=orjson.dumps(d), content_type="application/json")

    async def sim_finish(self, request: web.Request) -> web.Response:
        """End the feed now (tests whose faults take an unknown time): /sim/stats says done once clients drained."""
        self.hub.finish_requested = True
        return web.Response(body=orjson.dumps({"finishing": True}), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.get("/websocket/v1", self.websocket),
            web.get("/v1/market/all", self.market_all),
            web.get("/v1/ticker/all", self.ticker_all),
            web.get("/v1/ticker", self.ticker),
            web.get("/v1/trades/ticks", self.trades_ticks),
            web.get("/sim/trades", self.sim_trades),
            web.get("/sim/stats", self.sim_stats),
            web.post("/sim/finish", self.sim_finish),
        ])
        return app
