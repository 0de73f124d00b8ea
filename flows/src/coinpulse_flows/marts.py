"""Gold KPI marts, recomputed from the 1-minute candles and mentions with window functions.

Tables (schema `marts_schema`, created if absent; snapshots are replaced, series upserted, so a refresh is
idempotent and a re-run converges):

- `top_markets`     top 10 markets by trade value (Σ quote_volume) over the look-back, `rank()`;
- `volatility`      stddev of 1-minute log returns per market (`lag()` over candles), `dense_rank()`;
- `vwap`            VWAP per market and window (Σ quote_volume / Σ volume);
- `price_community` per market and minute on a dense grid: forward-filled close, log return, volume, rolling
                    60-minute VWAP, mentions, sentiment, rolling correlations (mentions vs |return|, sentiment vs
                    return) and the mention z-score over the previous `spike_baseline_minutes`;
- `lead_lag`        corr(mentions at t, return at t+k) for each lag k (`lead()` / `lag()` with a per-row offset);
- `mention_spikes`  minutes whose z-score passes `spike_z` with at least `spike_min_mentions`; each is published
                    once to `mention.alert` (keyed `market|bucket_start`, a compacted topic, so a re-publish after a
                    crash is harmless) and then marked published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import gold_key
from psycopg import sql

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
  market text NOT NULL, lag_minutes int NOT NULL, corr float8, n bigint, as_of timestamptz NOT NULL,
  PRIMARY KEY (market, lag_minutes));
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

# the link over a dense minute grid; the extra look-back (`warm`) feeds the baselines and the first returns
LINK = """
CREATE TEMP TABLE pc ON COMMIT DROP AS
WITH bounds AS (
  SELECT date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(win)s + %(warm)s) AS lo,
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

LEAD_LAG = """
INSERT INTO {s}.lead_lag
SELECT market, k, corr(mentions::float8, shifted), count(shifted), %(as_of)s
FROM (
  SELECT pc.market, l.k, pc.mentions,
         CASE WHEN l.k >= 0 THEN lead(pc.ret, l.k) OVER w ELSE lag(pc.ret, -l.k) OVER w END AS shifted
  FROM pc CROSS JOIN unnest(%(lags)s::int[]) AS l(k)
  WHERE pc.bucket_start >= date_trunc('minute', %(as_of)s::timestamptz) - make_interval(mins => %(win)s)
  WINDOW w AS (PARTITION BY pc.market, l.k ORDER BY pc.bucket_start)) x
GROUP BY market, k
"""


def _ident(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def _sql(text: str, s: FlowSettings) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(s.marts_schema), candles=_ident(s.candles_table),
                                mentions=_ident(s.mentions_table))


def ensure_marts(s: FlowSettings, conn: psycopg.Connection) -> None:
    conn.execute(_sql(DDL, s))


@dataclass
class MartsResult:
    as_of: str
    top_markets: int
    volatility: int
    vwap: int
    price_community: int
    lead_lag: int
    new_spikes: int
    published: int


def refresh_marts(s: FlowSettings, as_of: datetime | None = None, publish: bool = True) -> MartsResult:
    as_of = as_of or datetime.now(UTC)
    p = {"as_of": as_of, "win": s.mart_window_minutes, "wins": s.vwap_windows_minutes,
         "warm": s.spike_baseline_minutes + 1, "corr_rows": s.corr_window_rows - 1, "base": s.spike_baseline_minutes,
         "lags": s.lead_lags, "z": s.spike_z, "min_mentions": s.spike_min_mentions, "now": datetime.now(UTC)}
    counts = {}
    with psycopg.connect(s.pg_dsn()) as conn:
        ensure_marts(s, conn)
        for table, stmt in (("top_markets", TOP), ("volatility", VOLATILITY)):
            conn.execute(_sql(f"DELETE FROM {{s}}.{table} WHERE window_minutes = %(win)s", s), p)
            counts[table] = conn.execute(_sql(stmt, s), p).rowcount
        conn.execute(_sql("DELETE FROM {s}.vwap", s))
        counts["vwap"] = conn.execute(_sql(VWAP, s), p).rowcount
        link = {**p, "win": s.link_window_minutes}
        conn.execute(_sql(LINK, s), link)
        counts["price_community"] = conn.execute(_sql(LINK_WRITE, s), link).rowcount
        conn.execute(_sql("DELETE FROM {s}.lead_lag", s))
        counts["lead_lag"] = conn.execute(_sql(LEAD_LAG, s), link).rowcount
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
