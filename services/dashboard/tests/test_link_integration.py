"""The link endpoints (`/api/link`, `/api/link/ranking`, `/api/link/series`) against PostgreSQL, as the read-only
dashboard role, over the link marts of the sample day (tables of the link marts contract, in the test's own schema).
Expected answers come from what the fixture wrote (`sample.LINK_CASES`, the generated rows), computed in Python."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from coinpulse_dashboard import queries
from coinpulse_dashboard.app import STATE, create_app
from coinpulse_dashboard.tables import Tables
from coinpulse_testing import sample
from psycopg import sql

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(dash_settings):
    async with TestClient(TestServer(create_app(dash_settings))) as c:
        yield c


async def _get(client, url: str, status: int = 200) -> dict:
    r = await client.get(url)
    body = await r.json()
    assert r.status == status, body
    return body


async def test_lead_lag_bars_and_verdict_of_a_leading_community(client, sample_day):
    d = await _get(client, "/api/link?market=KRW-BTC")  # default metric: mentions vs |return|
    assert d["metric"] == "mentions_absret" and d["state"] == "ok"
    want = sample_day.lead_lag[("KRW-BTC", "mentions_absret")]
    assert [b["lag"] for b in d["lags"]] == list(range(-sample.MAX_LAG, sample.MAX_LAG + 1))
    assert [b["corr"] for b in d["lags"]] == pytest.approx([r[1] for r in want])
    assert [b["lag"] for b in d["lags"] if b["significant"]] == [k for k, _, _, _, sig in want if sig] == [2, 3, 4]
    assert d["summary"]["best_lag"] == 3 and d["summary"]["best_corr"] == pytest.approx(0.42)
    assert d["verdict"] == "community_leads" and d["significant"] is True
    assert d["sentence"] == "community leads by 3 min"
    assert d["p_text"] == "p = 0.003 (Bonferroni over 31 lags)"
    assert d["summary"]["window_end"] == sample_day.end.timestamp()


@pytest.mark.parametrize(("market", "metric", "sentence", "p_text"), [
    ("KRW-ETH", "mentions_absret", "community follows by 2 min", "p = 0.012 (Bonferroni over 31 lags)"),
    ("KRW-XRP", "mentions_absret", "moves together", "p = 0.021 (Bonferroni over 31 lags)"),
    ("KRW-ADA", "mentions_absret", "no significant link", "p = 0.5 (Bonferroni over 31 lags)"),
    ("KRW-SOL", "mentions_absret", "not enough data yet", ""),
    ("KRW-BTC", "sentiment_ret", "community leads by 1 min", "p = 0.04 (Bonferroni over 31 lags)"),
    ("KRW-DOGE", "mentions_ret", "community follows by 7 min", "p = 0.008 (Bonferroni over 31 lags)"),
])
async def test_every_verdict_in_words(client, market, metric, sentence, p_text):
    d = await _get(client, f"/api/link?market={market}&metric={metric}")
    assert (d["sentence"], d["p_text"]) == (sentence, p_text)


async def test_a_market_without_link_rows_is_not_enough_data(client):
    d = await _get(client, f"/api/link?market={sample.NO_LINK_MARKET}")
    assert d["state"] == "no_data" and d["lags"] == [] and d["summary"] is None
    assert d["sentence"] == "not enough data yet" and d["significant"] is False


async def test_link_rejects_a_bad_market_or_metric(client):
    assert "market" in (await _get(client, "/api/link?market=btc", 400))["error"]
    assert "metric" in (await _get(client, "/api/link?market=KRW-BTC&metric=volume", 400))["error"]
    assert "metric" in (await _get(client, "/api/link/ranking?metric=x';--", 400))["error"]


@pytest.mark.parametrize("metric", ["mentions_absret", "mentions_ret"])
async def test_ranking_puts_significant_links_first_then_the_strongest(client, sample_day, metric):
    d = await _get(client, f"/api/link/ranking?metric={metric}")
    rows = {m: r for (m, mt), r in sample_day.link_summary.items() if mt == metric}
    sig = {"community_leads", "community_follows", "together"}

    def key(m):
        r = rows[m]
        return (r["verdict"] not in sig, r["verdict"] == "insufficient_data",
                -abs(r["best_corr"]) if r["best_corr"] is not None else 0, m)

    want = sorted(rows, key=key)
    got = d["markets"]
    assert [r["market"] for r in got] == want
    assert [r["rank"] for r in got] == list(range(1, len(want) + 1))
    n_sig = sum(r["verdict"] in sig for r in rows.values())
    assert n_sig >= 1 and all(r["significant"] for r in got[:n_sig]) and not any(r["significant"] for r in got[n_sig:])
    first = got[0]
    exp = rows[first["market"]]
    assert first["abs_corr"] == pytest.approx(abs(exp["best_corr"]))
    assert first["p_adjusted"] == pytest.approx(exp["p_adjusted"]) and first["best_lag"] == exp["best_lag"]
    assert sample.NO_LINK_MARKET not in [r["market"] for r in got]


async def test_ranking_limit(client):
    d = await _get(client, "/api/link/ranking?limit=3")
    assert [r["market"] for r in d["markets"]] == ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


@pytest.mark.parametrize(("tf", "step"), [("1m", 60), ("5m", 300), ("1h", 3600)])
async def test_rolling_correlation_and_spikes_on_the_chart_buckets(client, sample_day, tf, step):
    d = await _get(client, f"/api/link/series?market=KRW-BTC&tf={tf}&limit=5000")
    exp: dict[int, list] = {}
    for b, c1, c2 in sample_day.rolling["KRW-BTC"]:
        e = exp.setdefault(int(b.timestamp()) // step * step, [[], []])
        for i, v in enumerate((c1, c2)):
            if v is not None:
                e[i].append(v)
    assert [r["time"] for r in d["rolling"]] == sorted(exp)
    for r in d["rolling"]:
        m, s = exp[r["time"]]
        assert r["corr_mentions_absret"] == (pytest.approx(sum(m) / len(m)) if m else None)
        assert r["corr_sentiment_ret"] == (pytest.approx(sum(s) / len(s)) if s else None)
    spikes: dict[int, list] = {}
    for b, cnt, z in sample_day.spikes["KRW-BTC"]:
        spikes.setdefault(int(b.timestamp()) // step * step, []).append((cnt, z))
    assert spikes, "the sample day has mention spikes"
    assert [x["time"] for x in d["spikes"]] == sorted(spikes)
    for x in d["spikes"]:
        assert x["spikes"] == len(spikes[x["time"]])
        assert x["zscore"] == pytest.approx(max(z for _, z in spikes[x["time"]]))
        assert x["mentions"] == max(c for c, _ in spikes[x["time"]])


async def test_link_series_since_and_limit_give_the_newest_increment(client, sample_day):
    since = int(sample_day.end.timestamp()) - 30 * 60
    d = await _get(client, f"/api/link/series?market=KRW-BTC&tf=1m&since={since}")
    assert [r["time"] for r in d["rolling"]] == list(range(since, int(sample_day.end.timestamp()), 60))
    assert all(x["time"] >= since for x in d["spikes"])
    d = await _get(client, "/api/link/series?market=KRW-BTC&tf=1m&limit=10")
    assert [r["time"] for r in d["rolling"]] == [int(b.timestamp()) for b, _, _ in sample_day.rolling["KRW-BTC"][-10:]]
    assert "since" in (await _get(client, "/api/link/series?market=KRW-BTC&since=-5", 400))["error"]


# -- the marts not there (yet), or not readable: "no data yet", never an error page --------------------------------

def _own(stack):
    return psycopg.connect(stack.pg_dsn(), autocommit=True)


@pytest.fixture
def odd_marts(stack):
    """Schemas beside the sample: one missing, one the reader may not read, one with the flows' earlier lead_lag
    (no `metric` column)."""
    absent, locked, old = (f"dash_{k}_{uuid.uuid4().hex[:8]}" for k in ("absent", "locked", "old"))
    with _own(stack) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(locked)))
        ddl = sample.LINK_DDL.replace("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO coinpulse_reader;", "")
        c.execute(sql.SQL(ddl).format(s=sql.Identifier(locked)))  # the reader may not even look into it
        c.execute(sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {s}.lead_lag (market text NOT NULL, lag_minutes int NOT NULL, "
                          "corr float8, n bigint, as_of timestamptz NOT NULL, PRIMARY KEY (market, lag_minutes)); "
                          "GRANT USAGE ON SCHEMA {s} TO coinpulse_reader; "
                          "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO coinpulse_reader").format(s=sql.Identifier(old)))
    yield absent, locked, old
    with _own(stack) as c:
        for s in (locked, old):
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))


@pytest.mark.parametrize("which", ["absent", "locked", "old"])
async def test_missing_marts_answer_no_data_yet(dash_settings, odd_marts, which):
    schema = dict(zip(("absent", "locked", "old"), odd_marts, strict=True))[which]
    s = dash_settings.model_copy(update={"dashboard_marts_schema": schema})
    async with TestClient(TestServer(create_app(s))) as c:
        d = await _get(c, "/api/link?market=KRW-BTC")
        assert d["state"] == "no_data" and d["sentence"] == "not enough data yet" and d["lags"] == []
        assert d["reason"].startswith("waiting for the link marts")
        r = await _get(c, "/api/link/ranking")
        assert r["state"] == "no_data" and r["markets"] == []
        x = await _get(c, "/api/link/series?market=KRW-BTC&tf=5m")
        assert x["state"] == "no_data" and x["rolling"] == [] and x["spikes"] == []
        # the rest of the dashboard is unaffected
        ov = await _get(c, "/api/overview")
        assert len(ov["top_trade_value"]) == 10


# -- live: a rebuilt link mart moves the stream's version ----------------------------------------------------------

async def test_a_link_refresh_moves_the_live_version(stack, dash_settings, sample_day):
    t = Tables(sample_day.schema, sample_day.schema, marts=sample_day.schema)
    app = create_app(dash_settings)
    async with TestClient(TestServer(app)):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while app[STATE]["version"] is None:
            assert loop.time() < deadline, "the version watcher never ran"
            await asyncio.sleep(0.05)
        before = app[STATE]["version"]
        assert before["link_as_of"] == sample_day.end.timestamp() and before["link_rows"] == len(sample_day.link_summary)
        new_as_of = sample_day.end + timedelta(minutes=1)
        try:
            with _own(stack) as c:
                c.execute(sql.SQL("UPDATE {}.link_summary SET as_of = %s WHERE market = 'KRW-BTC'").format(
                    sql.Identifier(sample_day.schema)), (new_as_of,))
            deadline = loop.time() + 20
            while app[STATE]["version"]["link_as_of"] != new_as_of.timestamp():
                assert loop.time() < deadline, f"the stream's version never showed the refresh: {app[STATE]['version']}"
                await asyncio.sleep(0.1)
            async with await psycopg.AsyncConnection.connect(dash_settings.reader_dsn(), autocommit=True) as conn:
                assert (await queries.link_version(conn, t))["link_as_of"] == new_as_of.timestamp()
        finally:
            with _own(stack) as c:  # back to the fixture's state for the other tests of the module
                c.execute(sql.SQL("UPDATE {}.link_summary SET as_of = %s").format(sql.Identifier(sample_day.schema)),
                          (sample_day.end,))
