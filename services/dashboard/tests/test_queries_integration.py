"""The query layer against PostgreSQL, as the read-only dashboard role, over a day of 1-minute data for 20 markets.
Expected answers are computed in plain Python from what the fixture wrote."""

from __future__ import annotations

import asyncio
import math
import statistics
from datetime import UTC, datetime

import psycopg
import pytest
from coinpulse_dashboard import health, queries
from coinpulse_dashboard.tables import Tables
from coinpulse_mentions.matcher import default_matcher
from coinpulse_testing import sample
from psycopg_pool import AsyncConnectionPool

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(dash_settings):
    async with await psycopg.AsyncConnection.connect(dash_settings.reader_dsn(), autocommit=True) as c:
        yield c


@pytest.fixture
def tables(sample_day) -> Tables:
    return Tables(sample_day.schema, sample_day.schema)


def _expected_overview(day: sample.SampleDay):
    out = {}
    for m, rows in day.candles_1m.items():
        out[m] = {"trade_value": sum(r[6] for r in rows), "first_open": rows[0][1], "last": rows[-1][4],
                  "volatility": statistics.stdev(math.log(r[4] / r[1]) for r in rows), "trade_count": sum(r[7] for r in rows)}
    return out


async def test_top_ten_by_trade_value_matches_the_data(conn, tables, sample_day):
    ov = await queries.overview(conn, tables, window_min=1440)
    exp = _expected_overview(sample_day)
    want = sorted(exp, key=lambda m: -exp[m]["trade_value"])[:10]
    assert [r["market"] for r in ov["top_trade_value"]] == want
    assert [r["rank"] for r in ov["top_trade_value"]] == list(range(1, 11))
    first = ov["top_trade_value"][0]
    assert first["trade_value"] == pytest.approx(exp[first["market"]]["trade_value"], rel=1e-9)
    assert first["trade_count"] == exp[first["market"]]["trade_count"]
    assert first["change"] == pytest.approx(exp[first["market"]]["last"] / exp[first["market"]]["first_open"] - 1)
    assert len(ov["markets"]) == 20 and ov["anchor"] == sample_day.end.timestamp() - 60


async def test_volatility_ranking_matches_the_data(conn, tables, sample_day):
    ov = await queries.overview(conn, tables, window_min=1440)
    exp = _expected_overview(sample_day)
    want = sorted(exp, key=lambda m: -exp[m]["volatility"])[:10]
    assert [r["market"] for r in ov["volatility"]] == want
    top = ov["volatility"][0]
    assert top["volatility"] == pytest.approx(exp[top["market"]]["volatility"], rel=1e-9)


async def test_kpi_window_is_anchored_on_the_newest_candle(conn, tables, sample_day):
    ov = await queries.overview(conn, tables, window_min=60)
    m = ov["top_trade_value"][0]["market"]
    rows = [r for r in sample_day.candles_1m[m] if r[0].timestamp() > sample_day.end.timestamp() - 60 - 3600]
    assert ov["top_trade_value"][0]["trade_value"] == pytest.approx(sum(r[6] for r in rows), rel=1e-9)


@pytest.mark.parametrize(("tf", "step"), [("1m", 60), ("5m", 300), ("1h", 3600)])
async def test_series_has_candles_and_mentions_on_the_same_buckets(conn, tables, sample_day, tf, step):
    d = queries.decode_series(await queries.series(conn, tables, "KRW-BTC", tf, 5000))
    rows = sample_day.candles_1m["KRW-BTC"]
    buckets = sorted({int(r[0].timestamp()) // step * step for r in rows})
    assert [c["time"] for c in d["candles"]] == buckets
    assert d["candles"][-1]["close"] == pytest.approx(rows[-1][4])
    assert d["candles"][0]["open"] == pytest.approx(rows[0][1])
    exp: dict[int, list[int]] = {}
    for b, cnt, pos, neg in sample_day.mentions["KRW-BTC"]:
        e = exp.setdefault(int(b.timestamp()) // step * step, [0, 0, 0])
        e[0], e[1], e[2] = e[0] + cnt, e[1] + pos, e[2] + neg
    got = {m["time"]: m for m in d["mentions"]}
    assert set(got) == set(exp)
    for t, (cnt, pos, neg) in exp.items():
        assert got[t]["mentions"] == cnt
        assert got[t]["sentiment"] == pytest.approx((pos - neg) / max(1, pos + neg))


async def test_series_limit_keeps_the_newest_bars(conn, tables, sample_day):
    d = queries.decode_series(await queries.series(conn, tables, "KRW-ETH", "1m", 100))
    rows = sample_day.candles_1m["KRW-ETH"]
    assert [c["time"] for c in d["candles"]] == [int(r[0].timestamp()) for r in rows[-100:]]
    assert all(m["time"] >= d["candles"][0]["time"] for m in d["mentions"])


async def test_series_since_returns_only_the_increment(conn, tables, sample_day):
    since = int(sample_day.end.timestamp()) - 5 * 60
    d = queries.decode_series(await queries.series(conn, tables, "KRW-BTC", "1m", 1440, since))
    assert d["candles"] and all(c["time"] >= since for c in d["candles"]) and len(d["candles"]) <= 5
    assert all(m["time"] >= since for m in d["mentions"])


async def test_unknown_market_gives_empty_series(conn, tables):
    d = queries.decode_series(await queries.series(conn, tables, "KRW-NONE", "1m", 100))
    assert d["candles"] == [] and d["mentions"] == []


async def test_posts_mentioning_the_coin_newest_first_without_deleted(conn, tables, sample_day, dash_settings):
    got = await queries.posts(conn, tables, "KRW-BTC", default_matcher(), limit=50, page=7)  # pages of 7: paging
    assert {p["post_no"] for p in await queries.posts(conn, tables, "KRW-BTC", default_matcher(), limit=50)} == {
        p["post_no"] for p in got}
    assert got[0]["title"] == sample.XSS_TITLE  # stored and returned verbatim; the page escapes it
    assert all(p["post_no"] != 999_998 for p in got)  # deleted
    times = [p["created_at"] for p in got]
    assert times == sorted(times, reverse=True)
    expected = {p["post_no"] for p in sample_day.posts if not p["deleted"] and (
        p["post_no"] == 999_999 or (p["post_no"] - 100_000) % 20 == 0)}  # BTC is coin 0 of 20
    assert {p["post_no"] for p in got} == expected
    # 비트코인캐시 (BCH, coin 11) must not count as 비트코인
    assert all((p["post_no"] - 100_000) % 20 != 11 for p in got if p["post_no"] < 999_000)


async def test_version_moves_when_a_candle_is_revised(stack, conn, tables, sample_day):
    before = await queries.version(conn, tables)
    with psycopg.connect(stack.pg_dsn(), autocommit=True) as own:
        own.execute(f'UPDATE "{sample_day.schema}".candles SET revision = revision + 1, emitted_at = now() + interval '
                    "'1 day' WHERE market = 'KRW-BTC' AND interval = '1m' AND bucket_start = %s",
                    (sample_day.candles_1m["KRW-BTC"][-3][0],))
    after = await queries.version(conn, tables)
    assert after["emitted"] > before["emitted"] and after["candle"] == before["candle"]


async def test_reader_role_cannot_write(conn, tables, sample_day):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await conn.execute(f'DELETE FROM "{sample_day.schema}".candles')


async def test_health_snapshot_against_the_stack(dash_settings, tables):
    import aiohttp

    async with AsyncConnectionPool(dash_settings.reader_dsn(), min_size=1, max_size=2,
                                   kwargs={"autocommit": True}) as pool, aiohttp.ClientSession() as http:
        snap = await health.snapshot(pool, tables, http, connect_url=dash_settings.connect,
                                     prefect_api=dash_settings.prefect_api, host=dash_settings.host,
                                     probes=[], timeout_s=5, prefect_headers=dash_settings.prefect_headers())
    db = snap["database"]
    assert db["state"] == "up" and db["ingest"]["markets"] >= 1
    assert db["ingest"]["emit_delay_p50_s"] == pytest.approx(62, abs=1)
    assert db["crawl"]["posts_24h"] >= 200
    assert snap["connect"]["state"] in ("up", "degraded") and isinstance(snap["connect"]["connectors"], list)
    assert snap["prefect"]["state"] in ("up", "degraded") and isinstance(snap["prefect"]["runs"], list)
    assert datetime.now(UTC).timestamp() - snap["at"] < 60


async def test_api_says_it_waits_for_data_before_the_tables_exist(stack):
    from aiohttp.test_utils import TestClient, TestServer
    from coinpulse_dashboard.app import create_app
    from coinpulse_dashboard.settings import DashboardSettings

    s = DashboardSettings(_env_file=None, dashboard_gold_schema="dash_absent", dashboard_silver_schema="dash_absent",
                          dashboard_health_s=60)
    async with TestClient(TestServer(create_app(s))) as client:
        r = await client.get("/api/overview")
        assert r.status == 503 and (await r.json())["error"].startswith("waiting for data")
        r = await client.get("/api/series?market=KRW-BTC&tf=1m")
        assert r.status == 503


async def test_overview_is_served_from_memory_until_the_data_changes(dash_settings):
    from aiohttp.test_utils import TestClient, TestServer
    from coinpulse_dashboard.app import STATE, create_app

    app = create_app(dash_settings)
    async with TestClient(TestServer(app)) as client:
        deadline = asyncio.get_running_loop().time() + 10
        while app[STATE]["version_key"] is None:
            assert asyncio.get_running_loop().time() < deadline, "version watcher never ran"
            await asyncio.sleep(0.05)
        first = await (await client.get("/api/overview")).json()
        assert app[STATE]["overview"][0] == app[STATE]["version_key"]
        again = await (await client.get("/api/overview")).json()
        assert again == first and len(first["top_trade_value"]) == 10
