"""Pipeline health: ingest lag, crawl freshness, connector states, last flow runs, service probes.

Every probe is independent and bounded by a timeout; a component that is down (or a table that does not exist yet)
shows up as `{"state": "down", "error": ...}` in its own section, never as a failed page.

Service probes (`services`) ask each service's own health endpoint (`COINPULSE_DASHBOARD_SERVICE_PROBES`, by default
`/health` on each service's port setting). Each answer becomes a state with a reason a person can act on:
2xx → up; 404 → down, "the probe's URL is wrong or the service is too old" (a probe that asks a path the service does
not serve must never look like a slow service); 503 and other errors → degraded / down with the service's own
reason; nothing listening → down, "not running (or still starting)".

Flow runs (`flow_runs`) are those of the pipeline's deployments (runs of a flow called directly, e.g. by a test or
`coinpulse_flows run`, are not the schedule's health), newest first, without the not-yet-due scheduled ones; the box
is degraded when the newest finished run of some deployment failed or crashed, or when runs are late (nothing is
serving the deployments).
"""

from __future__ import annotations

import asyncio
import json
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
    try:  # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel (cpython#86296)
        async with asyncio.timeout(timeout_s):
            return await fn()
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


FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
BAD = ("FAILED", "CRASHED")


async def flow_runs(http: aiohttp.ClientSession, prefect_api: str, limit: int = 8,
                    headers: dict[str, str] | None = None) -> dict:
    # deployment runs that have started (or should have): scheduled runs in the future are not history
    runs_filter = {"deployment_id": {"is_null_": False}, "state": {"type": {"not_any_": ["SCHEDULED"]}}}
    async with http.post(f"{prefect_api}/flow_runs/filter", headers=headers,
                         json={"sort": "EXPECTED_START_TIME_DESC", "limit": limit, "flow_runs": runs_filter}) as resp:
        resp.raise_for_status()
        runs = await resp.json()
    late_filter = {"deployment_id": {"is_null_": False}, "state": {"name": {"any_": ["Late"]}}}
    async with http.post(f"{prefect_api}/flow_runs/count", headers=headers, json={"flow_runs": late_filter}) as resp:
        late = int(await resp.json()) if resp.status == 200 else 0
    flow_ids = sorted({r["flow_id"] for r in runs if r.get("flow_id")})
    names: dict[str, str] = {}
    if flow_ids:
        async with http.post(f"{prefect_api}/flows/filter", headers=headers,
                             json={"flows": {"id": {"any_": flow_ids}}}) as resp:
            if resp.status == 200:
                names = {f["id"]: f["name"] for f in await resp.json()}
    items = [{"flow": names.get(r.get("flow_id"), "?"), "name": r.get("name"), "state": r.get("state_type"),
              "state_name": r.get("state_name"), "start": r.get("start_time") or r.get("expected_start_time"),
              "duration_s": r.get("total_run_time"), "deployment_id": r.get("deployment_id")} for r in runs]
    newest_finished: dict[str, dict] = {}  # deployment -> its newest finished run (the list is newest first)
    for i in items:
        if i["state"] in FINISHED:
            newest_finished.setdefault(i["deployment_id"], i)
    failed = sorted({i["flow"] for i in newest_finished.values() if i["state"] in BAD})
    errors = [f"the last run of {f} failed" for f in failed]
    if late:
        errors.append(f"{late} run(s) late: is `coinpulse_flows serve` running?")
    out: dict[str, Any] = {"state": "degraded" if errors else "up", "runs": items, "late": late}
    if errors:
        out["error"] = "; ".join(errors)
    return out


def parse_probes(spec: str) -> list[tuple[str, int, str]]:
    """`name=port/path,...` -> [(name, port, '/path')]."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, rest = part.split("=", 1)
        port, _, path = rest.partition("/")
        out.append((name.strip(), int(port), "/" + path))
    return out


def _reason(body: str) -> str:
    """The service's own words for a non-2xx health answer: `reason` / `error` of a JSON body, or its text."""
    try:
        v = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:200]
    if isinstance(v, dict):
        for k in ("reason", "error"):
            if v.get(k):
                return str(v[k])[:200]
    return json.dumps(v, separators=(",", ":"))[:200]


async def probe(http: aiohttp.ClientSession, host: str, name: str, port: int, path: str,
                timeout_s: float = 2.0) -> dict:
    """One service's health endpoint → {"name", "state": up | degraded | down, "status"?, "error"?, "detail"?}."""
    url = f"http://{host}:{port}{path}"
    try:
        async with asyncio.timeout(timeout_s), http.get(url) as resp:
            status, body = resp.status, (await resp.content.read(64_000)).decode("utf-8", "replace")
    except TimeoutError:
        return {"name": name, "state": "down", "error": f"{name}: {path} on port {port} gave no answer within "
                f"{timeout_s:g} s"}
    except aiohttp.ClientConnectorError:
        return {"name": name, "state": "down", "error": f"{name}: nothing listens on {host}:{port}: the service is "
                "not running (or still starting)"}
    except Exception as e:  # noqa: BLE001 - any failure of a probe is a state to show
        return {"name": name, "state": "down", "error": f"{name}: {path}: {type(e).__name__}: {e}"[:300]}
    out: dict[str, Any] = {"name": name, "status": status}
    if 200 <= status < 300:
        out["state"] = "up"
        try:
            detail = json.loads(body)
        except ValueError:
            detail = None
        if isinstance(detail, dict):
            out["detail"] = detail
    elif status == 404:
        out.update(state="down", error=f"{name}: {path} answered 404: the probe's URL is wrong or the service is "
                   "too old")
    elif status == 503:
        out.update(state="degraded", error=f"{name}: {path} answered 503: {_reason(body)}")
    else:
        out.update(state="down", error=f"{name}: {path} answered {status}: {_reason(body)}")
    return out


async def services(http: aiohttp.ClientSession, host: str, probes: list[tuple[str, int, str]],
                   timeout_s: float = 2.0) -> dict:
    items = await asyncio.gather(*(probe(http, host, *p, timeout_s=timeout_s) for p in probes))
    out: dict[str, Any] = {"state": "up" if all(i["state"] == "up" for i in items) else "degraded",
                           "services": list(items)}
    errors = [i["error"] for i in items if i.get("error")]
    if errors:
        out["error"] = "; ".join(errors)
    return out


async def snapshot(pool: AsyncConnectionPool, t: Tables, http: aiohttp.ClientSession, *, connect_url: str,
                   prefect_api: str, host: str, probes: list[tuple[str, int, str]], timeout_s: float,
                   prefect_headers: dict[str, str] | None = None) -> dict:
    db, conn, flows, svc = await asyncio.gather(
        _guard("database", timeout_s, lambda: database(pool, t)),
        _guard("connect", timeout_s, lambda: connectors(http, connect_url)),
        _guard("prefect", timeout_s, lambda: flow_runs(http, prefect_api, headers=prefect_headers)),
        # each probe has its own timeout; the section's is a little longer so one slow service shows as itself
        _guard("services", timeout_s + 1, lambda: services(http, host, probes, timeout_s)),
    )
    return {"at": time.time(), "database": db, "connect": conn, "prefect": flows, "services": svc}
