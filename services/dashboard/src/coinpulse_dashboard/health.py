"""Pipeline health: ingest lag, crawl freshness, connector states, last flow runs, service probes.

Every probe is independent and bounded by a timeout; a component that is down (or a table that does not exist yet)
shows up as `{"state": "down", "error": ...}` in its own section, never as a failed page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from coinpulse_dashboard.tables import Tables

# newest 1-minute candles: how old the newest trade is, and how long after its minute closed each was emitted
INGEST = """
SELECT max(last_trade_at) AS newest_trade, max(bucket_start) AS newest_candle,
       percentile_cont(0.5) WITHIN GROUP (
         ORDER BY extract(epoch FROM emitted_at - bucket_start) - 60) AS emit_delay_p50_s,
       count(DISTINCT market) AS markets
FROM (SELECT market, bucket_start, last_trade_at, emitted_at FROM {c} WHERE true{f}
      ORDER BY bucket_start DESC LIMIT 200) x
"""
CRAWL = """
SELECT max(fetched_at) AS newest_fetch, max(created_at) AS newest_post, count(*) AS posts
FROM {p} WHERE created_at > now() - interval '1 day'
"""
MENTIONS = "SELECT max(bucket_start) AS newest_mention, max(emitted_at) AS newest_emit FROM {m} " \
           "WHERE bucket_start > now() - interval '1 day'"


def _age(now: float, v) -> float | None:
    return round(now - v.timestamp(), 1) if v is not None else None


async def _guard(name: str, timeout_s: float, fn: Callable[[], Awaitable[dict]]) -> dict:
    try:
        return await asyncio.wait_for(fn(), timeout_s)
    except Exception as e:  # noqa: BLE001 - any failure of a component is a state to show, not an error
        msg = str(e) or type(e).__name__
        return {"state": "down", "error": f"{type(e).__name__}: {msg}"[:300]}


async def database(pool: AsyncConnectionPool, t: Tables) -> dict:
    now = time.time()
    out: dict[str, Any] = {"state": "up"}
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL(INGEST).format(c=t.candles("1m"), f=t.candles_filter("1m")))
        r = await cur.fetchone()
        out["ingest"] = {"newest_trade_age_s": _age(now, r["newest_trade"]),
                         "newest_candle_age_s": _age(now, r["newest_candle"]),
                         "emit_delay_p50_s": None if r["emit_delay_p50_s"] is None else round(r["emit_delay_p50_s"], 1),
                         "markets": r["markets"]}
        await cur.execute(sql.SQL(MENTIONS).format(m=t.mentions))
        r = await cur.fetchone()
        out["mentions"] = {"newest_mention_age_s": _age(now, r["newest_mention"])}
        await cur.execute(sql.SQL(CRAWL).format(p=t.posts))
        r = await cur.fetchone()
        out["crawl"] = {"newest_fetch_age_s": _age(now, r["newest_fetch"]),
                        "newest_post_age_s": _age(now, r["newest_post"]), "posts_24h": r["posts"]}
    return out


async def connectors(http: aiohttp.ClientSession, connect_url: str) -> dict:
    async with http.get(f"{connect_url}/connectors", params={"expand": "status"}) as resp:
        resp.raise_for_status()
        body = await resp.json()
    items = []
    for name, v in sorted(body.items()):
        st = v.get("status", {})
        tasks = [t.get("state", "?") for t in st.get("tasks", [])]
        items.append({"name": name, "state": st.get("connector", {}).get("state", "?"), "tasks": tasks})
    ok = all(i["state"] == "RUNNING" and all(t == "RUNNING" for t in i["tasks"]) for i in items)
    return {"state": "up" if ok else "degraded", "connectors": items}


async def flow_runs(http: aiohttp.ClientSession, prefect_api: str, limit: int = 8) -> dict:
    async with http.post(f"{prefect_api}/flow_runs/filter",
                         json={"sort": "EXPECTED_START_TIME_DESC", "limit": limit}) as resp:
        resp.raise_for_status()
        runs = await resp.json()
    flow_ids = sorted({r["flow_id"] for r in runs if r.get("flow_id")})
    names: dict[str, str] = {}
    if flow_ids:
        async with http.post(f"{prefect_api}/flows/filter", json={"flows": {"id": {"any_": flow_ids}}}) as resp:
            if resp.status == 200:
                names = {f["id"]: f["name"] for f in await resp.json()}
    items = [{"flow": names.get(r.get("flow_id"), "?"), "name": r.get("name"), "state": r.get("state_type"),
              "state_name": r.get("state_name"), "start": r.get("start_time") or r.get("expected_start_time"),
              "duration_s": r.get("total_run_time")} for r in runs]
    failed = any(i["state"] in ("FAILED", "CRASHED") for i in items)
    return {"state": "degraded" if failed else "up", "runs": items}


def parse_probes(spec: str) -> list[tuple[str, int, str]]:
    """`name=port/path,...` -> [(name, port, '/path')]."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, rest = part.split("=", 1)
        port, _, path = rest.partition("/")
        out.append((name.strip(), int(port), "/" + path))
    return out


async def services(http: aiohttp.ClientSession, host: str, probes: list[tuple[str, int, str]]) -> dict:
    async def one(name: str, port: int, path: str) -> dict:
        try:
            async with http.get(f"http://{host}:{port}{path}") as resp:
                return {"name": name, "state": "up" if resp.status < 400 else "degraded", "status": resp.status}
        except Exception as e:  # noqa: BLE001
            return {"name": name, "state": "down", "error": type(e).__name__}

    items = await asyncio.gather(*(one(*p) for p in probes))
    return {"state": "up" if all(i["state"] == "up" for i in items) else "degraded", "services": list(items)}


async def snapshot(pool: AsyncConnectionPool, t: Tables, http: aiohttp.ClientSession, *, connect_url: str,
                   prefect_api: str, host: str, probes: list[tuple[str, int, str]], timeout_s: float) -> dict:
    db, conn, flows, svc = await asyncio.gather(
        _guard("database", timeout_s, lambda: database(pool, t)),
        _guard("connect", timeout_s, lambda: connectors(http, connect_url)),
        _guard("prefect", timeout_s, lambda: flow_runs(http, prefect_api)),
        _guard("services", timeout_s, lambda: services(http, host, probes)),
    )
    return {"at": time.time(), "database": db, "connect": conn, "prefect": flows, "services": svc}
