"""Pure parts of the dashboard: table naming, search patterns, probes, request validation, headers, assets."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from coinpulse_dashboard import health, queries
from coinpulse_dashboard.app import create_app
from coinpulse_dashboard.settings import DashboardSettings
from coinpulse_dashboard.tables import Tables
from coinpulse_mentions.matcher import MentionMatcher, default_matcher
from coinpulse_testing.net import free_port
from psycopg import sql

pytestmark = pytest.mark.unit

STATIC = Path(queries.__file__).parent / "static"
ALIASES = {"particles": ["이", "가", "는", "으로"],
           "markets": {"KRW-BTC": {"ko": ["비트코인", "비트"], "names": ["bitcoin"], "tickers": ["BTC"]}}}


def test_one_table_layout_filters_on_interval():
    t = Tables("g", "s")
    assert t.candles("5m") == sql.Identifier("g", "candles")
    assert "interval" in repr(t.candles_filter("5m")) and "'5m'" in repr(t.candles_filter("5m"))


def test_per_timeframe_layout_picks_the_table_and_needs_no_filter():
    t = Tables("gold", "silver", candles_name="candles_{tf}")
    assert t.candles("1h") == sql.Identifier("gold", "candles_1h")
    assert repr(t.candles_filter("1h")) == repr(sql.SQL(""))


@pytest.mark.parametrize("bad", ["gold;drop", "x y", "", "1abc"])
def test_table_names_must_be_plain_identifiers(bad):
    with pytest.raises(ValueError):
        Tables(gold=bad)


def test_unknown_timeframe_is_rejected():
    with pytest.raises(ValueError):
        Tables().candles("2m")


def _post(title: str, body: str | None = None) -> dict:
    return {"gallery": "g", "post_no": 1, "title": title, "body": body}


def test_posts_about_a_coin_are_those_the_mention_counter_counts():
    """One rule: the dashboard asks the counter's matcher (coinpulse_mentions), no regex approximating it."""
    m = default_matcher()
    yes = ["비트코인 간다", "오늘 비트코인이 오른다", "BTC 가즈아", "(BTC)"]
    no = ["트비트코인", "비트코인캐시 간다", "btc", "BTCUSD", "이더리움만"]
    for text in yes + no:
        assert queries.mentions_market(m, "KRW-BTC", _post(text)) == any(
            h.market == "KRW-BTC" for h in m.mentions(text)), text
    assert all(queries.mentions_market(m, "KRW-BTC", _post(t)) for t in yes)
    assert not any(queries.mentions_market(m, "KRW-BTC", _post(t)) for t in no)
    assert queries.mentions_market(m, "KRW-BTC", _post("제목", "본문에 비트코인"))  # the body counts, as for the agent


def test_alias_prefilter_is_a_superset_of_the_matcher():
    m = MentionMatcher({"version": 1, **ALIASES}, {"version": 1, "positive": [], "negative": []})
    like = queries.alias_patterns("KRW-BTC", m)
    assert set(like) == {"%비트코인%", "%비트%", "%bitcoin%", "%BTC%"}
    assert queries.alias_patterns("KRW-NEWC", m) == []  # a coin the dictionary does not know is never mentioned
    odd = MentionMatcher({"version": 1, "particles": [], "markets": {"KRW-X": {"names": ["a_b%c"]}}},
                         {"version": 1, "positive": [], "negative": []})
    assert queries.alias_patterns("KRW-X", odd) == ["%a\\_b\\%c%"]  # LIKE wildcards in an alias are escaped


def test_probe_spec_parses():
    assert health.parse_probes("a=1/health, b=2/metrics") == [("a", 1, "/health"), ("b", 2, "/metrics")]
    assert health.parse_probes("") == []


async def test_components_that_are_down_are_reported_not_raised():
    port = free_port()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        c = await health._guard("connect", 2, lambda: health.connectors(http, f"http://127.0.0.1:{port}"))
        f = await health._guard("prefect", 2, lambda: health.flow_runs(http, f"http://127.0.0.1:{port}/api"))
        s = await health.services(http, "127.0.0.1", [("ingest-upbit", port, "/health")])
    assert c["state"] == "down" and c["error"]
    assert f["state"] == "down"
    assert s["state"] == "degraded" and s["services"][0]["state"] == "down"


@pytest.fixture
async def client():
    # PostgreSQL on a closed port: the app must still start and answer what needs no database
    s = DashboardSettings(_env_file=None, postgres_port=free_port(), connect_url=f"http://127.0.0.1:{free_port()}",
                          prefect_port=free_port(), dashboard_probe_timeout_s=0.5, dashboard_tick_s=5,
                          dashboard_pool_timeout_s=0.3,
                          dashboard_health_s=60)
    async with TestClient(TestServer(create_app(s))) as c:
        yield c


@pytest.mark.parametrize("qs", ["market=btc&tf=1m", "market=KRW-BTC&tf=2m", "market=KRW-BTC&limit=0",
                                "market=KRW-BTC&limit=abc", "market=KRW-BTC&since=-5", "market=KRW-BTC%27--"])
async def test_bad_series_requests_get_400(client, qs):
    r = await client.get(f"/api/series?{qs}")
    assert r.status == 400 and "error" in await r.json()


async def test_bad_posts_request_gets_400(client):
    r = await client.get("/api/posts?market=<script>")
    assert r.status == 400


async def test_page_is_served_with_a_strict_content_security_policy(client):
    r = await client.get("/")
    assert r.status == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_chart_library_is_served_locally(client):
    r = await client.get("/static/vendor/lightweight-charts.standalone.production.js")
    assert r.status == 200
    body = await r.text()
    assert "Lightweight Charts" in body[:400] and len(body) > 100_000


def test_page_loads_no_remote_assets():
    html = (STATIC / "index.html").read_text()
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert srcs and all(s.startswith("/static/") or s.startswith("data:") for s in srcs)


def test_page_script_never_uses_innerhtml():
    js = (STATIC / "app.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.strip().startswith(("/*", "*", "//")))
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", code.split("*/", 1)[1])


async def test_health_is_served_even_when_everything_is_down(client):
    r = await client.get("/api/health")
    assert r.status == 200
    h = await r.json()
    assert h["database"]["state"] == "down" and h["connect"]["state"] == "down" and h["prefect"]["state"] == "down"


async def test_live_viewers_are_bounded_and_the_one_over_is_told_why():
    s = DashboardSettings(_env_file=None, postgres_port=free_port(), connect_url=f"http://127.0.0.1:{free_port()}",
                          prefect_port=free_port(), dashboard_probe_timeout_s=0.5, dashboard_tick_s=5,
                          dashboard_pool_timeout_s=0.3, dashboard_health_s=60, dashboard_max_live_viewers=2)
    async with TestClient(TestServer(create_app(s))) as c:
        streams = [await c.get("/api/stream") for _ in range(2)]
        for r in streams:
            assert r.status == 200 and await r.content.readline() == b"retry: 3000\n"
        over = await c.get("/api/stream")
        assert over.status == 503 and over.headers["Retry-After"] == "30"
        assert "COINPULSE_DASHBOARD_MAX_LIVE_VIEWERS" in (await over.json())["error"]
        streams[0].close()  # a viewer leaves: its place is free again
        deadline = time.monotonic() + 60  # the server sees the disconnect in its own time
        while (r := await c.get("/api/stream")).status != 200 and time.monotonic() < deadline:
            r.close()
            await asyncio.sleep(0.1)
        assert r.status == 200, "a place freed by a closed stream was not given to a new viewer within 60 s"
        r.close()
        streams[1].close()


def test_a_malformed_url_fragment_is_no_coin_not_an_error():
    js = (STATIC / "app.js").read_text()
    assert "decodeURIComponent(location.hash" in js.split("function hashMarket()")[1].split("}")[0]
    assert js.count("decodeURIComponent(location.hash") == 1  # only inside the guarded helper


async def test_api_answers_503_when_the_database_is_down(client):
    r = await client.get("/api/overview")
    assert r.status == 503


# -- the link panel's words ----------------------------------------------------------------------------------------

def _summary(verdict, lag, p):
    return {"verdict": verdict, "best_lag": lag, "best_corr": 0.3, "p_adjusted": p}


@pytest.mark.parametrize(("summary", "sentence", "p_text"), [
    (_summary("community_leads", 3, 0.003), "community leads by 3 min", "p = 0.003 (Bonferroni over 31 lags)"),
    (_summary("community_follows", -12, 0.0004), "community follows by 12 min", "p < 0.001 (Bonferroni over 31 lags)"),
    (_summary("together", 0, 0.049), "moves together", "p = 0.049 (Bonferroni over 31 lags)"),
    (_summary("no_link", 5, 1.0), "no significant link", "p = 1 (Bonferroni over 31 lags)"),
    (_summary("insufficient_data", None, None), "not enough data yet", ""),
    (None, "not enough data yet", ""),
    (_summary("sideways", 2, 0.2), "verdict 'sideways'", "p = 0.2 (Bonferroni over 31 lags)"),
])
def test_link_sentence(summary, sentence, p_text):
    got = queries.link_sentence(summary, 31)
    assert (got["sentence"], got["p_text"]) == (sentence, p_text)
    assert got["significant"] == (summary is not None and summary["verdict"] in queries.SIGNIFICANT_VERDICTS)


def test_link_sentence_without_lag_rows_still_says_the_correction():
    assert queries.link_sentence(_summary("community_leads", 1, 0.01), 0)["p_text"] == "p = 0.01 (Bonferroni-corrected)"


def test_settings_name_the_marts_schema():
    s = DashboardSettings(_env_file=None, dashboard_marts_schema="my_marts")
    assert Tables.from_settings(s).mart("lead_lag") == sql.Identifier("my_marts", "lead_lag")
    assert Tables().mart("link_summary") == sql.Identifier("marts", "link_summary")
    with pytest.raises(ValueError):
        Tables(marts="marts; drop")
    with pytest.raises(ValueError):
        Tables().mart("x y")


@pytest.mark.parametrize("url", [
    "/api/link?market=KRW-BTC&metric=nope", "/api/link?market=nope", "/api/link/ranking?metric=a",
    "/api/link/ranking?limit=0", "/api/link/ranking?limit=abc", "/api/link/series?market=KRW-BTC&tf=2m",
    "/api/link/series?market=KRW-BTC&limit=999999", "/api/link/series?market=KRW-BTC&since=-1"])
async def test_bad_link_requests_get_400(client, url):
    r = await client.get(url)
    assert r.status == 400 and "error" in await r.json()


async def test_link_with_the_database_down_is_an_error_not_no_data(client):
    r = await client.get("/api/link?market=KRW-BTC")
    assert r.status == 503 and "error" in await r.json()


async def test_shutdown_sends_a_swallowed_cancel_again():
    """Python 3.11's wait_for can swallow a cancel (cpython#86296; CI hung 600 s tearing the app down): a watcher
    that ignores its first cancel still ends, and the stop returns."""
    from coinpulse_dashboard.app import _stop

    cancels = []

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) > 1:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(30):
        await _stop([task])
    assert task.cancelled() and len(cancels) == 2
