"""Gold KPI marts, recomputed from the 1-minute candles and mentions with window functions.

Tables (schema `marts_schema`, created if absent; snapshots are replaced, series upserted, so a refresh is
idempotent and a re-run converges; everything but the alert publication is one transaction):

- `top_markets`     top 10 markets by trade value (Σ quote_volume) over the look-back, `rank()`;
- `volatility`      stddev of 1-minute log returns per market (`lag()` over candles), `dense_rank()`;
- `vwap`            VWAP per market and window (Σ quote_volume / Σ volume);
- `price_community` per market and minute on a dense grid: forward-filled close, log return, volume, rolling
                    60-minute VWAP, mentions, sentiment, rolling correlations (mentions vs |return|, sentiment vs
                    return) and the mention z-score over the previous `spike_baseline_minutes`;
- `mention_spikes`  minutes whose z-score passes `spike_z` with at least `spike_min_mentions`; each is published
                    once to `mention.alert` (keyed `market|bucket_start`, a compacted topic, so a re-publish after a
                    crash is harmless) and then marked published.

The link marts (contract shared with the dashboard; statistics in `linkstats.py`, which documents the method),
snapshots over the last `link_lookback_minutes` of the same dense grid, every market of the grid. Lag k > 0: the
community at minute t against the market at t + k, i.e. the community LEADS by k minutes; k < 0 it follows:

- `lead_lag`     (market, metric, lag_minutes): corr, n (pairs), p_value (circular block permutation, seeded),
                 significant (p_value < link_alpha / lags tested, Bonferroni), for every lag in
                 [-link_max_lag_minutes, +link_max_lag_minutes] and metric `mentions_ret` (mentions vs 1-minute
                 log return), `mentions_absret` (vs |return|), `sentiment_ret` (sentiment vs return); NULL where
                 undefined (a constant series, too few pairs: no test);
- `link_summary` (market, metric): best_lag (largest |corr|), best_corr, p_value (the best lag's), p_adjusted
                 (Bonferroni, capped at 1), verdict (`community_leads` / `community_follows` / `together` when
                 p_adjusted < link_alpha by the best lag's sign, else `no_link`; `insufficient_data` under
                 `link_min_points` pairs or with a constant series), n, window_start, window_end;
- `event_study`  (market, horizon_minutes) for each of `link_event_horizons_minutes`: the events (first minute of
                 each run of minutes passing the `mention_spikes` rule within the look-back), mean cumulative log
                 return and mean |1-minute return| over the next h minutes, each with a 95 % t-interval (NULL
                 below two events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from coinpulse_common.logging import get_logger
from coinpulse_common.settings import READER_ROLE
from coinpulse_common.topics import gold_key
from psycopg import sql

from coinpulse_flows import linkstats
from coinpulse_flows.settings import FlowSettings

log = get_logger("coinpulse.flows.marts")

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.top_markets (
  window_minutes int NOT NULL, market text NOT NULL, rank int NOT NULL, trade_value float8, volume float8,
  trade_count bigint, as_of timestamptz NOT NULL, PRIMARY KEY (window_minutes, market));
CREATE TABLE IF NOT EXISTS {s}.volatility (
  window_minutes int NOT NULL, market text NOT NULL, rank int NOT NULL, volatility float8, returns bigint,
  range_pct float8, as_of timestamptz NOT NULL, PRIMARY KEY (window_minutes, market));
CREATE TABLE IF NOT EXISTS {s}.vwap (
  window_minutes int NOT NULL, market text NOT NULL, vwap float8, volume float8, quote_volume float8,
  as_of timestamptz NOT NULL, PRIMARY KEY (window_minutes, market));
CREATE TABLE IF NOT EXISTS {s}.price_community (
  market text NOT NULL, bucket_start timestamptz NOT NULL, close float8, ret float8, volume float8,
  vwap_60 float8, mentions bigint NOT NULL, sentiment float8, corr_mentions_absret float8,
  corr_sentiment_ret float8, baseline_mean float8, baseline_std float8, zscore float8,
  as_of timestamptz NOT NULL, PRIMARY KEY (market, bucket_start));
CREATE TABLE IF NOT EXISTS {s}.lead_lag (
  market text NOT NULL, metric text NOT NULL, lag_minutes int NOT NULL, corr float8, n bigint, p_value float8,
  significant bool NOT NULL, as_of timestamptz NOT NULL, PRIMARY KEY (market, metric, lag_minutes));
CREATE TABLE IF NOT EXISTS {s}.link_summary (
  market text NOT NULL, metric text NOT NULL, best_lag int, best_corr float8, p_value float8, p_adjusted float8,
  verdict text NOT NULL, n bigint, window_start timestamptz NOT NULL, window_end timestamptz NOT NULL,
  as_of timestamptz NOT NULL, PRIMARY KEY (market, metric));
CREATE TABLE IF NOT EXISTS {s}.event_study (
  market text NOT NULL, horizon_minutes int NOT NULL, n_events int NOT NULL, mean_ret float8, ret_ci_low float8,
  ret_ci_high float8, mean_absret float8, absret_ci_low float8, absret_ci_high float8, as_of timestamptz NOT NULL,
  PRIMARY KEY (market, horizon_minutes));
CREATE TABLE IF NOT EXISTS {s}.mention_spikes (
  market text NOT NULL, bucket_start timestamptz NOT NULL, mentions bigint NOT NULL, baseline_mean float8,
  baseline_std float8, zscore float8, detected_at timestamptz NOT NULL, published boolean NOT NULL DEFAULT false,
  PRIMARY KEY (market, bucket_start));
"""

_WINDOW = "bucket_start >= %(as_of)s - make_interval(mins => %(win)s) AND bucket_start < %(as_of)s"

TOP = """
WITH w AS (
  SELECT market, sum(quote_volume) AS trade_value, sum(volume) AS volume, sum(trade_count)::bigint AS trade_count
  FROM {candles} WHERE "interval" = '1m' AND """ + _WINDOW + """ GROUP BY market),
r AS (SELECT *, rank() OVER (ORDER BY trade_value DESC, market) AS rank FROM w)
INSERT INTO {s}.top_markets
SELECT %(win)s, market, rank, trade_value, volume, trade_count, %(as_of)s FROM r WHERE rank <= 10
"""

VOLATILITY = """
WITH c AS (
  SELECT market, high, low,
         ln(close / nullif(lag(close) OVER (PARTITION BY market ORDER BY bucket_start), 0)) AS r
  FROM {candles} WHERE "interval" = '1m' AND """ + _WINDOW + """ AND close > 0),
v AS (
  SELECT market, stddev_samp(r) AS volatility, count(r) AS returns,
         (max(high) - min(low)) / nullif(min(low), 0) AS range_pct
  FROM c GROUP BY market HAVING count(r) >= 2)
INSERT INTO {s}.volatility
SELECT %(win)s, market, dense_rank() OVER (ORDER BY volatility DESC NULLS LAST), volatility, returns, range_pct,
       %(as_of)s
FROM v
"""

VWAP = """
INSERT INTO {s}.vwap
SELECT w.m, c.market, sum(c.quote_volume) / nullif(sum(c.volume), 0), sum(c.volume), sum(c.quote_volume), %(as_of)s
FROM {candles} c JOIN unnest(%(wins)s::int[]) AS w(m)
  ON c."interval" = '1m' AND c.bucket_start >= %(as_of)s - make_interval(mins => w.m) AND c.bucket_start < %(as_of)s
GROUP BY w.m, c.market
"""

# the link over a dense minute grid of `span` minutes (the longer of the rewritten window and the statistics'
# look-back); the extra look-back (`warm`) feeds the baselines and the first returns
LINK = """
CREATE TEMP TABLE pc ON COMMIT DROP AS
WITH bounds AS (
  SELECT date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(span)s + %(warm)s) AS lo,
         date_trunc('minute', %(as_of)s::timestamptz) AS hi),
markets AS (
  SELECT DISTINCT market FROM {candles}, bounds WHERE "interval" = '1m' AND bucket_start >= lo AND bucket_start < hi
  UNION SELECT DISTINCT market FROM {mentions}, bounds WHERE bucket_start >= lo AND bucket_start < hi),
grid AS (
  SELECT m.market, g AS bucket_start FROM markets m, bounds,
         generate_series(bounds.lo, bounds.hi - interval '1 minute', interval '1 minute') AS g),
j AS (
  SELECT g.market, g.bucket_start, c.close, coalesce(c.volume, 0) AS volume, coalesce(c.quote_volume, 0) AS qv,
         coalesce(n.mentions, 0)::bigint AS mentions, n.sentiment,
         count(c.close) OVER (PARTITION BY g.market ORDER BY g.bucket_start) AS close_grp
  FROM grid g
  LEFT JOIN {candles} c ON c."interval" = '1m' AND c.market = g.market AND c.bucket_start = g.bucket_start
  LEFT JOIN {mentions} n ON n.market = g.market AND n.bucket_start = g.bucket_start),
f AS (
  SELECT *, first_value(close) OVER (PARTITION BY market, close_grp ORDER BY bucket_start) AS close_ff FROM j),
r AS (
  SELECT *, ln(close_ff / nullif(lag(close_ff) OVER (PARTITION BY market ORDER BY bucket_start), 0)) AS ret
  FROM f)
SELECT market, bucket_start, close_ff AS close, ret, volume,
       sum(qv) OVER w60 / nullif(sum(volume) OVER w60, 0) AS vwap_60,
       mentions, sentiment,
       corr(mentions::float8, abs(ret)) OVER wc AS corr_mentions_absret,
       corr(sentiment, ret) OVER wc AS corr_sentiment_ret,
       avg(mentions) OVER wb AS baseline_mean,
       stddev_samp(mentions) OVER wb AS baseline_std,
       count(*) OVER wb AS baseline_n
FROM r
WINDOW w60 AS (PARTITION BY market ORDER BY bucket_start ROWS BETWEEN 59 PRECEDING AND CURRENT ROW),
       wc AS (PARTITION BY market ORDER BY bucket_start ROWS BETWEEN %(corr_rows)s PRECEDING AND CURRENT ROW),
       wb AS (PARTITION BY market ORDER BY bucket_start ROWS BETWEEN %(base)s PRECEDING AND 1 PRECEDING)
"""

# z-score with the baseline's std floored at one mention: a quiet market has std 0, and a handful of mentions
# there is a spike, not an infinity
ZSCORE = "(mentions - baseline_mean) / greatest(coalesce(baseline_std, 0), 1.0)"

LINK_WRITE = """
INSERT INTO {s}.price_community
SELECT market, bucket_start, close, ret, volume, vwap_60, mentions, sentiment, corr_mentions_absret,
       corr_sentiment_ret, baseline_mean, baseline_std, """ + ZSCORE + """, %(as_of)s
FROM pc WHERE bucket_start >= date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(win)s)
ON CONFLICT (market, bucket_start) DO UPDATE SET
  close = excluded.close, ret = excluded.ret, volume = excluded.volume, vwap_60 = excluded.vwap_60,
  mentions = excluded.mentions, sentiment = excluded.sentiment,
  corr_mentions_absret = excluded.corr_mentions_absret, corr_sentiment_ret = excluded.corr_sentiment_ret,
  baseline_mean = excluded.baseline_mean, baseline_std = excluded.baseline_std, zscore = excluded.zscore,
  as_of = excluded.as_of
"""

SPIKES = """
INSERT INTO {s}.mention_spikes (market, bucket_start, mentions, baseline_mean, baseline_std, zscore, detected_at)
SELECT market, bucket_start, mentions, baseline_mean, coalesce(baseline_std, 0), """ + ZSCORE + """, %(now)s
FROM pc
WHERE bucket_start >= date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(win)s)
  AND baseline_n >= %(base)s AND mentions >= %(min_mentions)s AND """ + ZSCORE + """ >= %(z)s
ON CONFLICT (market, bucket_start) DO NOTHING
"""

# the dense series of the link statistics' look-back, per market in grid order; `spike` is the mention_spikes rule
SERIES = """
SELECT market, ret, mentions::float8, sentiment,
       coalesce(baseline_n >= %(base)s AND mentions >= %(min_mentions)s AND """ + ZSCORE + """ >= %(z)s, false)
FROM pc WHERE bucket_start >= date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(lookback)s)
ORDER BY market, bucket_start
"""

# lead_lag of the first version (market, lag_minutes, corr, n), before the statistics: lacks p_value
OLD_LEAD_LAG = """
SELECT 1 FROM information_schema.tables t WHERE t.table_schema = %s AND t.table_name = 'lead_lag'
  AND NOT EXISTS (SELECT 1 FROM information_schema.columns c WHERE c.table_schema = t.table_schema
                  AND c.table_name = 'lead_lag' AND c.column_name = 'p_value')
"""


def _ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def _sql(text: str, s: FlowSettings) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(s.marts_schema), candles=_ident(s.candles_table),
                                mentions=_ident(s.mentions_table))


def ensure_marts(s: FlowSettings, conn: psycopg.Connection) -> None:
    # marts are derived data, rebuilt by every refresh: a lead_lag table of the old shape is dropped and recreated
    if conn.execute(OLD_LEAD_LAG, (s.marts_schema,)).fetchone():
        log.info("lead_lag_recreated", schema=s.marts_schema, reason="old columns (no p_value, metric)")
        conn.execute(_sql("DROP TABLE {s}.lead_lag", s))
    conn.execute(_sql(DDL, s))
    # the dashboard reads the marts as the read-only role (created by the stack's bootstrap; absent on a bare server)
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone():
        for grant in ("GRANT USAGE ON SCHEMA {s} TO {r}", "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}"):
            conn.execute(sql.SQL(grant).format(s=sql.Identifier(s.marts_schema), r=sql.Identifier(READER_ROLE)))


def link_config(s: FlowSettings) -> linkstats.LinkConfig:
    return linkstats.LinkConfig(max_lag=s.link_max_lag_minutes, alpha=s.link_alpha, permutations=s.link_permutations,
                                block=s.link_block_minutes, min_points=s.link_min_points,
                                horizons=tuple(s.link_event_horizons_minutes), seed=s.link_seed)


def link_series(rows: list[tuple]) -> dict[str, dict[str, np.ndarray]]:
    """SERIES rows (market, ret, mentions, sentiment, spike), grouped by market, as float arrays (NULL -> NaN)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if not rows:
        return out
    markets = [r[0] for r in rows]
    vals = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows], dtype=float)
    cuts = [0] + [i for i in range(1, len(rows)) if markets[i] != markets[i - 1]] + [len(rows)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        v = vals[a:b]
        out[markets[a]] = {"ret": v[:, 0], "mentions": v[:, 1], "sentiment": v[:, 2], "spikes": v[:, 3] > 0}
    return out


def link_rows(market: str, res: linkstats.MarketLink, as_of: datetime, lo: datetime, hi: datetime) -> dict:
    """The rows of the three link marts for one market's statistics."""
    return {
        "lead_lag": [(market, metric, r.lag, r.corr, r.n, r.p_value, r.significant, as_of)
                     for metric, rows in res.lead_lag.items() for r in rows],
        "link_summary": [(market, metric, m.best_lag, m.best_corr, m.p_value, m.p_adjusted, m.verdict, m.n, lo, hi,
                          as_of) for metric, m in res.summary.items()],
        "event_study": [(market, e.horizon, e.n_events, e.mean_ret, e.ret_ci_low, e.ret_ci_high, e.mean_absret,
                         e.absret_ci_low, e.absret_ci_high, as_of) for e in res.events],
    }


def refresh_link(s: FlowSettings, conn: psycopg.Connection, p: dict) -> dict[str, int]:
    """lead_lag, link_summary and event_study from the `pc` grid of this transaction (replaced, not upserted)."""
    hi = p["as_of"].astimezone(UTC).replace(second=0, microsecond=0)
    lo = hi - timedelta(minutes=s.link_lookback_minutes)
    series = link_series(conn.execute(_sql(SERIES, s), p).fetchall())
    cfg = link_config(s)
    tables: dict[str, list[tuple]] = {"lead_lag": [], "link_summary": [], "event_study": []}
    verdicts: dict[str, int] = {}
    for market, v in series.items():
        # every market of the grid has the same length: one seeded draw of surrogates serves them all
        res = linkstats.market_link(v["ret"], v["mentions"], v["sentiment"], v["spikes"], cfg)
        for table, rows in link_rows(market, res, p["as_of"], lo, hi).items():
            tables[table].extend(rows)
        for m in res.summary.values():
            verdicts[m.verdict] = verdicts.get(m.verdict, 0) + 1
    for table, rows in tables.items():
        conn.execute(_sql(f"DELETE FROM {{s}}.{table}", s))
        with conn.cursor().copy(_sql(f"COPY {{s}}.{table} FROM STDIN", s)) as cp:
            for row in rows:
                cp.write_row(row)
    log.info("link_marts", markets=len(series), window_start=lo.isoformat(), window_end=hi.isoformat(), **verdicts)
    return {table: len(rows) for table, rows in tables.items()}


@dataclass
class MartsResult:
    as_of: str
    top_markets: int
    volatility: int
    vwap: int
    price_community: int
    lead_lag: int
    link_summary: int
    event_study: int
    new_spikes: int
    published: int


def refresh_marts(s: FlowSettings, as_of: datetime | None = None, publish: bool = True) -> MartsResult:
    as_of = as_of or datetime.now(UTC)
    p = {"as_of": as_of, "win": s.mart_window_minutes, "wins": s.vwap_windows_minutes,
         "warm": s.spike_baseline_minutes + 1, "corr_rows": s.corr_window_rows - 1, "base": s.spike_baseline_minutes,
         "z": s.spike_z, "min_mentions": s.spike_min_mentions, "now": datetime.now(UTC),
         "span": max(s.link_window_minutes, s.link_lookback_minutes), "lookback": s.link_lookback_minutes}
    counts = {}
    with psycopg.connect(s.pg_dsn()) as conn:
        # one refresh at a time per schema: two would delete the same snapshots and collide inserting them again
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"coinpulse.marts.{s.marts_schema}",))
        ensure_marts(s, conn)
        for table, stmt in (("top_markets", TOP), ("volatility", VOLATILITY)):
            conn.execute(_sql(f"DELETE FROM {{s}}.{table} WHERE window_minutes = %(win)s", s), p)
            counts[table] = conn.execute(_sql(stmt, s), p).rowcount
        conn.execute(_sql("DELETE FROM {s}.vwap", s))
        counts["vwap"] = conn.execute(_sql(VWAP, s), p).rowcount
        link = {**p, "win": s.link_window_minutes}
        conn.execute(_sql(LINK, s), link)
        counts["price_community"] = conn.execute(_sql(LINK_WRITE, s), link).rowcount
        counts.update(refresh_link(s, conn, link))
        counts["new_spikes"] = conn.execute(_sql(SPIKES, s), link).rowcount
    published = publish_spikes(s) if publish else 0
    r = MartsResult(as_of.isoformat(), published=published, **counts)
    log.info("marts_refreshed", **r.__dict__)
    return r


def publish_spikes(s: FlowSettings) -> int:
    """Send every unpublished spike to the alert topic, then mark it published (at least once, keyed)."""
    from coinpulse_common.avro import TopicCodec
    from coinpulse_common.kafka import producer

    with psycopg.connect(s.pg_dsn()) as conn:
        rows = conn.execute(_sql(
            "SELECT market, bucket_start, mentions, baseline_mean, baseline_std, zscore, detected_at "
            "FROM {s}.mention_spikes WHERE NOT published ORDER BY bucket_start, market FOR UPDATE SKIP LOCKED",
            s)).fetchall()
        if not rows:
            return 0
        codec = TopicCodec(s.alert_topic, s, schema_topic="mention.alert")
        prod = producer(s)
        errors: list[str] = []

        def on_delivery(err, _msg):
            if err is not None:
                errors.append(str(err))

        for market, start, mentions, mean, std, z, detected in rows:
            start_ms = int(start.timestamp() * 1000)
            value = {"market": market, "bucket_start": start_ms, "mentions": int(mentions),
                     "baseline_mean": float(mean or 0), "baseline_std": float(std or 0), "zscore": float(z),
                     "detected_at": int(detected.timestamp() * 1000)}
            prod.produce(s.alert_topic, key=gold_key(market, start_ms).encode(), value=codec.encode(value),
                         on_delivery=on_delivery)
        left = prod.flush(30)
        if left or errors:
            raise RuntimeError(f"mention alerts not delivered: {left} pending, errors: {errors[:3]}")
        conn.execute(_sql("UPDATE {s}.mention_spikes t SET published = true "
                          "FROM unnest(%s::text[], %s::timestamptz[]) AS u(m, b) "
                          "WHERE t.market = u.m AND t.bucket_start = u.b", s),
                     ([r[0] for r in rows], [r[1] for r in rows]))
    return len(rows)
