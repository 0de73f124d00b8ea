"""The dashboard's web server (aiohttp): static page and chart library, a JSON API, and a live event stream.

- `GET /api/overview`                      market list, top-10 by trade value, volatility ranking (one query)
- `GET /api/series?market=&tf=&limit=&since=`  candles and mentions on the same buckets (one query each)
- `GET /api/posts?market=&limit=`          recent posts mentioning the coin (one query)
- `GET /api/link?market=&metric=`          lead–lag bars per lag and the verdict in words (marts.lead_lag, link_summary)
- `GET /api/link/ranking?metric=`          markets ranked by the strength of the link (marts.link_summary)
- `GET /api/link/series?market=&tf=&since=&limit=`  rolling correlations and mention spikes on the chart's buckets
- `GET /api/health`                        pipeline health (refreshed in the background, served from memory)
- `GET /api/stream`                        Server-Sent Events: `version` when new data lands, `health` snapshots
- `GET /healthz`                           liveness of this process

Live updates cost one small query per tick for all viewers together: a background task watches the data version
and fans it out to every stream; each browser then fetches only the increment (`since`).

The link marts are written by the flows (`refresh_marts`); until they exist, or while the reader role may not read
them, the link endpoints answer 200 with `"state": "no_data"` and the reason, and the page says "not enough data yet".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from pathlib import Path

import aiohttp
import orjson
import psycopg
from aiohttp import web
from coinpulse_common.logging import get_logger
from coinpulse_mentions.matcher import load_matcher
from psycopg_pool import AsyncConnectionPool

from coinpulse_dashboard import health as health_mod
from coinpulse_dashboard import queries
from coinpulse_dashboard.settings import DashboardSettings
from coinpulse_dashboard.tables import TIMEFRAMES, Tables

log = get_logger("coinpulse.dashboard")
STATIC = Path(__file__).parent / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

S_KEY = web.AppKey("settings", DashboardSettings)
POOL = web.AppKey("pool", AsyncConnectionPool)
TABLES = web.AppKey("tables", Tables)
STATE = web.AppKey("state", dict)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def _json(data, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _bad(msg: str) -> web.Response:
    return _json({"error": msg}, status=400)


@web.middleware
async def security_headers(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def _market(request: web.Request) -> str | None:
    m = request.query.get("market", "")
    return m if queries.MARKET_RE.match(m) else None


def _int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    v = int(raw)  # ValueError -> 400 by the caller
    if not lo <= v <= hi:
        raise ValueError(f"{name} out of range [{lo}, {hi}]")
    return v


async def _query(request: web.Request, fn, *args, **kwargs):
    async with request.app[POOL].connection() as conn:
        return await fn(conn, request.app[TABLES], *args, **kwargs)


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def api_overview(request: web.Request) -> web.Response:
    s = request.app[S_KEY]
    st = request.app[STATE]
    key = st.get("version_key") if s.dashboard_overview_cache else None
    cached = st.get("overview")
    if cached is not None and key is not None and cached[0] == key:
        return _json(cached[1])
    data = await _query(request, queries.overview, s.dashboard_kpi_window_minutes)
    if key is not None:
        st["overview"] = (key, data)
    return _json(data)


def _chart_args(request: web.Request, since_default: int | None) -> tuple[str, str, int, int | None] | str:
    """(market, tf, limit, since) of a request for something on the candle chart's axis, or what is wrong with it."""
    s = request.app[S_KEY]
    market, tf = _market(request), request.query.get("tf", "1m")
    if market is None:
        return "market must look like KRW-BTC"
    if tf not in TIMEFRAMES:
        return f"tf must be one of {', '.join(TIMEFRAMES)}"
    try:
        return market, tf, _int(request, "limit", 1440, 1, s.dashboard_max_bars), \
            _int(request, "since", since_default, 0, 2**40)
    except ValueError as e:
        return str(e)


async def api_series(request: web.Request) -> web.Response:
    args = _chart_args(request, None)
    if isinstance(args, str):
        return _bad(args)
    market, tf, limit, since = args
    body = await _query(request, queries.series, market, tf, limit, since)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


@functools.lru_cache(maxsize=4)
def _matcher(aliases_path: str):
    return load_matcher(aliases_path or None)


async def api_posts(request: web.Request) -> web.Response:
    s = request.app[S_KEY]
    market = _market(request)
    if market is None:
        return _bad("market must look like KRW-BTC")
    try:
        limit = _int(request, "limit", 20, 1, 100)
    except ValueError as e:
        return _bad(str(e))
    matcher = _matcher(s.dashboard_aliases_path)  # the mention counter's own dictionary and rules
    rows = await _query(request, queries.posts, market, matcher, limit, s.dashboard_posts_window_hours)
    return _json({"market": market, "posts": rows})


# the marts' absence is a state of the pipeline (the flow has not run yet, or has not granted the reader), not a fault
_MARTS_MISSING = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.InvalidSchemaName,
                  psycopg.errors.InsufficientPrivilege)


async def _marts(request: web.Request, fn, *args, **base) -> web.Response:
    try:
        return _json(await _query(request, fn, *args))
    except _MARTS_MISSING as e:
        reason = e.diag.message_primary or type(e).__name__
        log.debug("link marts not readable", path=request.path, reason=reason)
        return _json({**base, "state": "no_data", "reason": f"waiting for the link marts: {reason}"})


def _metric(request: web.Request) -> str | None:
    m = request.query.get("metric") or queries.DEFAULT_LINK_METRIC
    return m if m in queries.LINK_METRICS else None


async def api_link(request: web.Request) -> web.Response:
    market, metric = _market(request), _metric(request)
    if market is None:
        return _bad("market must look like KRW-BTC")
    if metric is None:
        return _bad(f"metric must be one of {', '.join(queries.LINK_METRICS)}")
    empty = queries.link_sentence(None, 0)
    return await _marts(request, queries.link, market, metric, market=market, metric=metric,
                        metric_label=queries.LINK_METRICS[metric], lags=[], summary=None, as_of=None, **empty)


async def api_link_ranking(request: web.Request) -> web.Response:
    metric = _metric(request)
    if metric is None:
        return _bad(f"metric must be one of {', '.join(queries.LINK_METRICS)}")
    try:
        limit = _int(request, "limit", 50, 1, 500)
    except ValueError as e:
        return _bad(str(e))
    return await _marts(request, queries.link_ranking, metric, limit, metric=metric,
                        metric_label=queries.LINK_METRICS[metric], markets=[])


async def api_link_series(request: web.Request) -> web.Response:
    args = _chart_args(request, 0)
    if isinstance(args, str):
        return _bad(args)
    market, tf, limit, since = args
    return await _marts(request, queries.link_series, market, tf, since, limit, market=market, tf=tf,
                        step=TIMEFRAMES[tf], rolling=[], spikes=[])


async def api_health(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if st.get("health") is None:
        await refresh_health(request.app)
    return _json(st["health"])


async def api_stream(request: web.Request) -> web.StreamResponse:
    st = request.app[STATE]
    limit = request.app[S_KEY].dashboard_max_live_viewers
    if len(st["subscribers"]) >= limit:  # each viewer holds a connection and a queue: bounded, the rest told why
        st["refused_viewers"] += 1
        log.warning("live_viewers_full", limit=limit, refused=st["refused_viewers"])
        return _json({"error": f"too many live viewers ({limit}, COINPULSE_DASHBOARD_MAX_LIVE_VIEWERS); the page "
                               "still works, without live updates: reload later"}, status=503,
                     headers={"Retry-After": "30"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    q: asyncio.Queue = asyncio.Queue(maxsize=16)
    st["subscribers"].add(q)
    try:
        await resp.write(b"retry: 3000\n\n")
        if st.get("version") is not None:
            await resp.write(_event("version", st["version"]))
        if st.get("health") is not None:
            await resp.write(_event("health", st["health"]))
        while True:
            try:
                async with asyncio.timeout(15.0):
                    kind, data = await q.get()
                await resp.write(_event(kind, data))
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
    except ConnectionResetError:  # the viewer left; a cancel (server shutting down) goes on up
        pass
    finally:
        st["subscribers"].discard(q)
    return resp


def _event(kind: str, data) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _publish(app: web.Application, kind: str, data) -> None:
    for q in list(app[STATE]["subscribers"]):
        if q.full():  # a stalled viewer loses old events, never blocks the others
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
        q.put_nowait((kind, data))


async def healthz(_: web.Request) -> web.Response:
    return _json({"ok": True})


# -- background tasks ----------------------------------------------------------------------------------------------

async def refresh_health(app: web.Application) -> dict:
    s = app[S_KEY]
    snap = await health_mod.snapshot(
        app[POOL], app[TABLES], app[HTTP], connect_url=s.connect, prefect_api=s.prefect_api, host=s.host,
        probes=health_mod.parse_probes(s.dashboard_service_probes), timeout_s=s.dashboard_probe_timeout_s,
        prefect_headers=s.prefect_headers())
    app[STATE]["health"] = snap
    return snap


async def _watch_version(app: web.Application) -> None:
    s, st = app[S_KEY], app[STATE]
    while True:
        try:
            async with app[POOL].connection(timeout=s.dashboard_probe_timeout_s) as conn:
                v = await queries.version(conn, app[TABLES])
                try:  # a rebuilt link mart is news too; absent marts are not an error of the stream
                    v.update(await queries.link_version(conn, app[TABLES]))
                except _MARTS_MISSING:
                    v.update(link_as_of=None, link_rows=0)
            key = tuple(sorted(v.items()))
            if key != st.get("version_key"):
                st["version_key"], st["version"] = key, v
                _publish(app, "version", v)
        except Exception as e:  # noqa: BLE001 - the database being down is shown by health; keep watching
            st["version_key"] = None
            log.debug("version check failed", error=str(e))
        await asyncio.sleep(s.dashboard_tick_s)


async def _watch_health(app: web.Application) -> None:
    s = app[S_KEY]
    while True:
        try:
            _publish(app, "health", await refresh_health(app))
        except Exception as e:  # noqa: BLE001
            log.warning("health refresh failed", error=str(e))
        await asyncio.sleep(s.dashboard_health_s)


async def _stop(tasks: list[asyncio.Task]) -> None:
    """Cancel the watchers and wait until they have ended. A cancel that a library swallowed (Python 3.11's wait_for
    does, cpython#86296) is sent again, so shutting down never hangs on one lost cancel."""
    pending = set(tasks)
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
        if pending:
            log.warning("watcher ignored its cancel; cancelling again", tasks=len(pending))


async def _lifecycle(app: web.Application):
    s = app[S_KEY]
    pool = AsyncConnectionPool(
        s.reader_dsn(), min_size=s.dashboard_pool_min, max_size=s.dashboard_pool_max, open=False,
        timeout=s.dashboard_pool_timeout_s,
        kwargs={"autocommit": True, "application_name": "coinpulse-dashboard",
                "options": f"-c statement_timeout={s.dashboard_statement_timeout_ms} "
                           "-c default_transaction_read_only=on"})
    await pool.open(wait=False)
    app[POOL] = pool
    app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=s.dashboard_probe_timeout_s))
    tasks = [asyncio.create_task(_watch_version(app)), asyncio.create_task(_watch_health(app))]
    yield
    await _stop(tasks)
    await app[HTTP].close()
    await pool.close()


@web.middleware
async def errors(request: web.Request, handler):
    t0 = time.perf_counter()
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except psycopg.errors.UndefinedTable as e:  # the sink has not created its tables yet
        return _json({"error": f"waiting for data: {e.diag.message_primary}"}, status=503)
    except Exception as e:  # noqa: BLE001 - one failed query answers 503 with its reason, never kills the server
        log.warning("request failed", path=request.path, error=f"{type(e).__name__}: {e}")
        return _json({"error": f"{type(e).__name__}"}, status=503)
    finally:
        if request.path.startswith("/api/") and request.path != "/api/stream":
            log.debug("request", path=request.path, ms=round((time.perf_counter() - t0) * 1000, 1))


def create_app(s: DashboardSettings) -> web.Application:
    app = web.Application(middlewares=[security_headers, errors])
    app[S_KEY] = s
    app[TABLES] = Tables.from_settings(s)
    app[STATE] = {"subscribers": set(), "refused_viewers": 0, "health": None, "version": None, "version_key": None}
    app.cleanup_ctx.append(_lifecycle)
    app.add_routes([
        web.get("/", index),
        web.get("/api/overview", api_overview),
        web.get("/api/series", api_series),
        web.get("/api/posts", api_posts),
        web.get("/api/link", api_link),
        web.get("/api/link/ranking", api_link_ranking),
        web.get("/api/link/series", api_link_series),
        web.get("/api/health", api_health),
        web.get("/api/stream", api_stream),
        web.get("/healthz", healthz),
        web.static("/static", STATIC, follow_symlinks=False),
    ])
    return app
