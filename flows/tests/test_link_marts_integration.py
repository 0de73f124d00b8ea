"""The link marts over real PostgreSQL tables: a day of 1-minute candles and mentions with a planted lead (and a
planted follow) goes through refresh_marts; lead_lag, link_summary and event_study find the lags, the verdicts and
the post-spike move; the correlation at the planted lag equals pandas' over the written series; a second refresh is
identical; a lead_lag table of the old shape is replaced."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from coinpulse_common.settings import READER_ROLE
from coinpulse_flows import marts
from scipy.signal import lfilter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
DAY = 1440
WARM = 120  # minutes of data before the look-back (baselines, first return)
N = DAY + WARM
LEAD, FOLLOW = 3, 2
SPIKES = [150, 260, 300, 520, 640, 800, 930, 1010, 1150, 1270]  # minutes (from the look-back start) of
# planted mention bursts on KRW-LEAD


def _ar1(rng, phi, sd):
    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, sd, N))


def _std(a):
    return (a - a.mean()) / a.std()


def _shift(a, k):
    out = np.zeros_like(a)
    out[k:] = a[: len(a) - k]
    return out


def _series(seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(returns, mentions) for N minutes; kind: lead / follow / none / quiet (no mention at all)."""
    rng = np.random.default_rng(seed)
    noise = 1e-3 * np.exp(_ar1(rng, 0.97, 0.1)) * _ar1(rng, 0.2, 1.0)
    z = _ar1(rng, 0.9, 0.3)
    if kind == "follow":
        m = rng.poisson(np.exp(0.7 + z + 0.6 * _shift(_std(noise), FOLLOW))).astype(float)
        return noise, m
    m = rng.poisson(np.exp(0.7 + z)).astype(float)
    if kind == "lead":
        m[[WARM + t for t in SPIKES]] = 90  # bursts, far above the chatter (spike_min_mentions is 50 here)
        return noise + 4e-4 * _shift(np.clip(_std(m), None, 4), LEAD) + 5e-3 * _shift(m >= 90, LEAD), m
    return noise, (m * 0 if kind == "quiet" else m)


MARKETS = {"KRW-LEAD": "lead", "KRW-FOLLOW": "follow", "KRW-NONE": "none", "KRW-QUIET": "quiet"}


def _write(s, schema: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    data = {m: _series(i, kind) for i, (m, kind) in enumerate(MARKETS.items())}
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.candles (market text, interval text, bucket_start timestamptz,
            open float8, high float8, low float8, close float8, volume float8, quote_volume float8, vwap float8,
            trade_count bigint, buy_volume float8, sell_volume float8, first_trade_at timestamptz,
            last_trade_at timestamptz, revision int, emitted_at timestamptz,
            PRIMARY KEY (market, interval, bucket_start))""")
        c.execute(f"""CREATE TABLE {schema}.mentions_1m (market text, bucket_start timestamptz, mentions bigint,
            posts bigint, comments bigint, positive bigint, negative bigint, sentiment float8, revision int,
            emitted_at timestamptz, PRIMARY KEY (market, bucket_start))""")
        with c.cursor().copy(f"COPY {schema}.candles (market, interval, bucket_start, open, high, low, close, volume, "
                             "quote_volume, vwap, trade_count) FROM STDIN") as cp:
            for m, (r, _) in data.items():
                close = 1000.0 * np.exp(np.cumsum(r))
                for t in range(N):
                    b, x = T0 + timedelta(minutes=t), float(close[t])
                    cp.write_row((m, "1m", b, x, x, x, x, 1.0, x, x, 1))
        rng = np.random.default_rng(99)
        with c.cursor().copy(f"COPY {schema}.mentions_1m (market, bucket_start, mentions, posts, comments, "
                             "sentiment) FROM STDIN") as cp:
            for m, (_, n) in data.items():
                for t in np.flatnonzero(n > 0):  # the aggregator writes only minutes with mentions
                    cp.write_row((m, T0 + timedelta(minutes=int(t)), int(n[t]), int(n[t]), 0,
                                  float(np.tanh(rng.normal()))))
    return data


def _tables(s) -> dict[str, list[tuple]]:
    m = s.marts_schema
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        return {t: c.execute(f"SELECT * FROM {m}.{t} ORDER BY 1, 2" + (", 3" if t == "lead_lag" else "")).fetchall()
                for t in ("lead_lag", "link_summary", "event_study")}


def test_link_marts_find_the_planted_lead_and_follow(flow_env):
    s, schema = flow_env["settings"], flow_env["schema"]
    s = s.model_copy(update={"spike_min_mentions": 50, "link_window_minutes": 240})
    data = _write(s, schema)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:  # the first lead_lag, from before the statistics
        c.execute(f"CREATE SCHEMA {s.marts_schema}")
        c.execute(f"CREATE TABLE {s.marts_schema}.lead_lag (market text NOT NULL, lag_minutes int NOT NULL, "
                  "corr float8, n bigint, as_of timestamptz NOT NULL, PRIMARY KEY (market, lag_minutes))")
        c.execute(f"INSERT INTO {s.marts_schema}.lead_lag VALUES ('KRW-OLD', 1, 0.5, 10, now())")
    as_of = T0 + timedelta(minutes=N, seconds=30)  # the minute in progress is not part of the grid
    r = marts.refresh_marts(s, as_of, publish=False)
    n_lags = 2 * s.link_max_lag_minutes + 1
    assert (r.lead_lag, r.link_summary, r.event_study) == (4 * 3 * n_lags, 4 * 3,
                                                           4 * len(s.link_event_horizons_minutes))
    got = _tables(s)
    summary = {(row[0], row[1]): row for row in got["link_summary"]}
    lo, hi = T0 + timedelta(minutes=WARM), T0 + timedelta(minutes=N)
    verdict = {k: (row[2], row[6]) for k, row in summary.items()}
    assert verdict[("KRW-LEAD", "mentions_ret")] == (LEAD, "community_leads")
    assert verdict[("KRW-FOLLOW", "mentions_ret")] == (-FOLLOW, "community_follows")
    assert verdict[("KRW-NONE", "mentions_ret")][1] == "no_link"
    assert {verdict[("KRW-QUIET", m)] for m in ("mentions_ret", "mentions_absret", "sentiment_ret")} == {
        (None, "insufficient_data")}
    for key in (("KRW-LEAD", "mentions_ret"), ("KRW-FOLLOW", "mentions_ret")):
        _, _, _, corr, p, p_adj, _, n, w_lo, w_hi, _ = summary[key]
        assert p < 0.01 and p_adj == pytest.approx(min(1.0, p * n_lags)) and p_adj < s.link_alpha
        assert (w_lo, w_hi, n) == (lo, hi, DAY - abs(verdict[key][0]))
    # lead_lag: every lag of every metric; the planted lag's correlation is pandas' over the series written
    rows = {(x[0], x[1], x[2]): x for x in got["lead_lag"]}
    assert sorted({k[2] for k in rows}) == list(range(-s.link_max_lag_minutes, s.link_max_lag_minutes + 1))
    ret, mentions = data["KRW-LEAD"]
    close = 1000.0 * np.exp(np.cumsum(ret))
    x = pd.Series(mentions[WARM:])
    y = pd.Series(np.log(close[WARM:] / close[WARM - 1:-1]))
    for k in (-5, 0, LEAD, 7):
        row = rows[("KRW-LEAD", "mentions_ret", k)]
        assert row[3] == pytest.approx(x.corr(y.shift(-k)), abs=1e-9) and row[4] == DAY - abs(k)
    assert rows[("KRW-LEAD", "mentions_ret", LEAD)][6] is True
    assert all(v[5] is None and v[6] is False for k, v in rows.items() if k[0] == "KRW-QUIET")
    assert all(v[5] is None or 0 < v[5] <= 1 for v in rows.values())
    # event study: the ten bursts; 3 minutes later the price jumps, so the 5-minute move is up, the 1-minute not
    ev = {(e[0], e[1]): e for e in got["event_study"]}
    assert [ev[("KRW-LEAD", h)][2] for h in s.link_event_horizons_minutes] == [len(SPIKES)] * 4
    one, five = ev[("KRW-LEAD", 1)], ev[("KRW-LEAD", 5)]  # (.., n_events, mean_ret, ret_ci_low, ret_ci_high, ..)
    assert one[4] < 0 < one[5] and five[4] > 0
    cum5 = [float(np.log(close[WARM + t + 5] / close[WARM + t])) for t in SPIKES]
    assert five[3] == pytest.approx(np.mean(cum5), rel=1e-9)
    assert five[7] > float(np.abs(y).mean())  # |return| after the bursts: above the day's mean, CI and all
    assert ev[("KRW-QUIET", 5)][2:9] == (0, None, None, None, None, None, None)
    assert not any(isinstance(v, float) and math.isnan(v) for t in got.values() for row in t for v in row)
    # the old table is gone, its row with it; a second refresh writes the same rows
    assert "KRW-OLD" not in {k[0] for k in rows}
    again = marts.refresh_marts(s, as_of, publish=False)
    assert (again.lead_lag, again.link_summary, again.event_study) == (r.lead_lag, r.link_summary, r.event_study)
    assert _tables(s) == got
    # the dashboard reads the marts as the read-only role: every link table is readable by it
    with psycopg.connect(host=s.host, port=s.postgres_port, dbname=s.pg_database, user=READER_ROLE,
                         password=s.pg_reader_password, autocommit=True) as c:
        for t in ("lead_lag", "link_summary", "event_study", "price_community", "mention_spikes"):
            c.execute(f"SELECT count(*) FROM {s.marts_schema}.{t}").fetchone()
    # two refreshes at once (a manual run during the scheduled one) take turns instead of colliding
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: marts.refresh_marts(s, as_of, publish=False), range(2)))
    assert [b.lead_lag for b in both] == [r.lead_lag] * 2
    assert _tables(s) == got
