"""The dashboard's query layer: one SQL statement per panel, every one bounded by an index and a LIMIT.

All times are anchored on the data (the newest 1-minute candle), not on the wall clock, so a replayed dataset from
last week shows the same as live data. Every function takes an open psycopg AsyncConnection (from the pool) and
returns plain JSON-ready values; epoch seconds are what the chart library wants on its time axis.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

from coinpulse_mentions.documents import post_document
from coinpulse_mentions.matcher import MentionMatcher
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from coinpulse_dashboard.tables import TIMEFRAMES, Tables

MARKET_RE = re.compile(r"^[A-Z]{2,5}-[A-Z0-9]{1,15}$")

# -- market overview: one pass over the window feeds the market list, the top-10 and the volatility ranking ----------
# A single hash aggregate, no sort: first open / last close come from min/max over (epoch, price) pairs, and
# volatility is the stddev of each minute's log return ln(close / open) (a minute without trades has no candle and
# no return). The rankings are window functions over the 20-odd aggregated rows.
OVERVIEW = """
WITH anchor AS (SELECT max(bucket_start) AS hi FROM {c} WHERE true{f}),
agg AS (
  SELECT market,
         sum(quote_volume) AS trade_value, sum(volume) AS volume, sum(trade_count)::bigint AS trade_count,
         (min(ARRAY[extract(epoch FROM bucket_start), open]))[2] AS first_open,
         (max(ARRAY[extract(epoch FROM bucket_start), close]))[2] AS last_close,
         max(high) AS high, min(low) AS low, stddev_samp(ln(close / open)) AS volatility, count(*) AS returns,
         max(bucket_start) AS last_bucket
  FROM {c}, anchor
  WHERE bucket_start > anchor.hi - make_interval(mins => %(win)s) AND bucket_start <= anchor.hi{f}
    AND open > 0 AND close > 0
  GROUP BY market)
SELECT agg.*, (SELECT hi FROM anchor) AS anchor,
       rank() OVER (ORDER BY trade_value DESC NULLS LAST, market) AS value_rank,
       CASE WHEN returns >= 2 AND volatility IS NOT NULL
            THEN rank() OVER (ORDER BY (returns >= 2 AND volatility IS NOT NULL) DESC, volatility DESC NULLS LAST,
                              market) END AS vol_rank
FROM agg
ORDER BY value_rank
LIMIT %(max_markets)s
"""

# the chart panel in one statement: the newest candles (index range on the primary key, LIMIT) and the mentions
# rolled up to the same buckets over the same span; PostgreSQL builds the JSON arrays, Python passes them through.
# Mention sentiment over a bucket follows the mention table's rule: (positive - negative) / max(1, positive + negative).
CANDLE_FIELDS = ("time", "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "buy_volume",
                 "sell_volume", "revision")
MENTION_FIELDS = ("time", "mentions", "posts", "comments", "sentiment")
SERIES = """
WITH c AS (
  SELECT bucket_start, open, high, low, close, volume, quote_volume, trade_count, buy_volume, sell_volume, revision
  FROM {c}
  WHERE market = %(market)s{f} AND bucket_start >= to_timestamp(%(since)s)
  ORDER BY bucket_start DESC
  LIMIT %(limit)s),
span AS (
  SELECT least(min(bucket_start), to_timestamp(nullif(%(since)s, 0))) AS lo,
         coalesce(max(bucket_start) + make_interval(secs => %(step)s), 'infinity') AS hi FROM c),
m AS (
  SELECT date_bin(make_interval(secs => %(step)s), bucket_start, timestamptz 'epoch') AS b,
         sum(mentions) AS mentions, sum(posts) AS posts, sum(comments) AS comments,
         (sum(positive) - sum(negative))::float8 / greatest(1, sum(positive) + sum(negative)) AS sentiment
  FROM {m}, span
  WHERE market = %(market)s AND bucket_start >= span.lo AND bucket_start < span.hi
  GROUP BY 1)
SELECT
  (SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket_start)::bigint, open, high, low, close, volume,
                                             quote_volume, trade_count, buy_volume, sell_volume, revision)
                            ORDER BY bucket_start), '[]') FROM c)::text AS candles,
  (SELECT coalesce(json_agg(json_build_array(extract(epoch FROM b)::bigint, mentions, posts, comments, sentiment)
                            ORDER BY b), '[]') FROM m)::text AS mentions
"""

# candidates for "posts about a coin": a case-insensitive substring match on any alias of the coin, a superset of
# what the mention matcher finds (its rules only narrow a substring hit); the matcher then decides, in Python
POSTS = """
WITH anchor AS (SELECT max(created_at) AS hi FROM {p})
SELECT gallery, post_no, title, body, created_at, views, recommend, reply_count, url
FROM {p}, anchor
WHERE created_at > anchor.hi - make_interval(hours => %(hours)s) AND NOT deleted
  AND (title ILIKE ANY(%(like)s) OR coalesce(body, '') ILIKE ANY(%(like)s))
  AND (created_at, post_no) < (%(before_ts)s, %(before_no)s)
ORDER BY created_at DESC, post_no DESC
LIMIT %(page)s
"""

# the live stream's change detector: newest candle and the newest emission among recent rows (revisions too)
VERSION = """
SELECT max(bucket_start) AS candle, max(emitted_at) AS emitted, count(*) AS n
FROM (SELECT bucket_start, emitted_at FROM {c} WHERE true{f} ORDER BY bucket_start DESC LIMIT 400) x
"""
VERSION_MENTIONS = """
SELECT max(bucket_start) AS mention, max(emitted_at) AS mention_emitted, count(*) AS mention_rows
FROM {m} WHERE bucket_start >= to_timestamp(%(lo)s)
"""


def _q(text: str, t: Tables, tf: str = "1m") -> sql.Composed:
    return sql.SQL(text).format(c=t.candles(tf), f=t.candles_filter(tf), m=t.mentions, p=t.posts)


async def _rows(conn: AsyncConnection, query: sql.Composed, params: dict) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def _ts(v: datetime | None) -> float | None:
    return v.timestamp() if v is not None else None


# -- overview ------------------------------------------------------------------------------------------------------

async def overview(conn: AsyncConnection, t: Tables, window_min: int = 1440, max_markets: int = 500) -> dict:
    rows = await _rows(conn, _q(OVERVIEW, t), {"win": window_min, "max_markets": max_markets})
    markets = []
    for r in rows:
        change = (r["last_close"] / r["first_open"] - 1.0) if r["first_open"] else None
        rng = (r["high"] - r["low"]) / r["low"] if r["low"] else None
        markets.append({
            "market": r["market"], "trade_value": r["trade_value"], "volume": r["volume"],
            "trade_count": r["trade_count"], "last": r["last_close"], "change": change, "range": rng,
            "volatility": r["volatility"], "returns": r["returns"], "last_bucket": _ts(r["last_bucket"]),
            "value_rank": r["value_rank"], "vol_rank": r["vol_rank"],
        })
    vol = sorted((m for m in markets if m["vol_rank"] is not None), key=lambda m: m["vol_rank"])
    return {
        "anchor": _ts(rows[0]["anchor"]) if rows else None, "window_minutes": window_min,
        "markets": sorted(m["market"] for m in markets),
        "top_trade_value": [{"rank": m["value_rank"], **m} for m in markets[:10]],
        "volatility": [{"rank": m["vol_rank"], **m} for m in vol[:10]],
    }


# -- chart series --------------------------------------------------------------------------------------------------

async def series(conn: AsyncConnection, t: Tables, market: str, tf: str, limit: int, since: int | None = None) -> bytes:
    """JSON of the newest `limit` candles of `market` at `tf` (from `since`, epoch s, when given: the live
    increment) and the mentions on the same buckets: rows are arrays in CANDLE_FIELDS / MENTION_FIELDS order."""
    if not MARKET_RE.match(market):
        raise ValueError(f"bad market {market!r}")
    step = TIMEFRAMES[tf]
    async with conn.cursor() as cur:
        await cur.execute(_q(SERIES, t, tf), {"market": market, "since": since or 0, "limit": limit, "step": step})
        candles, mentions = await cur.fetchone()
    head = json.dumps({"market": market, "tf": tf, "step": step, "candle_fields": CANDLE_FIELDS,
                       "mention_fields": MENTION_FIELDS})
    return f'{head[:-1]}, "candles": {candles}, "mentions": {mentions}}}'.encode()


def decode_series(body: bytes) -> dict:
    """The series JSON with rows as dicts (tests, benchmark)."""
    d = json.loads(body)
    d["candles"] = [dict(zip(d["candle_fields"], r, strict=True)) for r in d["candles"]]
    d["mentions"] = [dict(zip(d["mention_fields"], r, strict=True)) for r in d["mentions"]]
    return d


# -- posts ---------------------------------------------------------------------------------------------------------

def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def alias_patterns(market: str, matcher: MentionMatcher) -> list[str]:
    """ILIKE patterns of every alias the mention matcher knows for `market` (none: the market is never mentioned)."""
    return sorted({f"%{_like_escape(a)}%" for a in matcher.aliases_of(market)})


def mentions_market(matcher: MentionMatcher, market: str, row: dict) -> bool:
    """The mention counter's own rule: the post's document text (title and body, as the agent builds it) has a hit
    of `market`."""
    text = post_document({**row, "created_at": 0}).text
    return any(h.market == market for h in matcher.mentions(text))


async def posts(conn: AsyncConnection, t: Tables, market: str, matcher: MentionMatcher, limit: int = 20,
                hours: int = 24, snippet: int = 240, page: int = 200) -> list[dict]:
    """The newest `limit` posts that the mention counter counts for `market`, newest first (no deleted ones)."""
    like = alias_patterns(market, matcher)
    out: list[dict] = []
    if not like:
        return out
    before = (datetime(9999, 1, 1, tzinfo=UTC), 0)
    while len(out) < limit:
        rows = await _rows(conn, _q(POSTS, t), {"like": like, "hours": hours, "page": page,
                                                "before_ts": before[0], "before_no": before[1]})
        if rows:
            before = (rows[-1]["created_at"], rows[-1]["post_no"])
        for r in rows:
            if len(out) < limit and mentions_market(matcher, market, r):
                body = r.pop("body") or ""
                r["snippet"] = body[:snippet]
                r["created_at"] = _ts(r["created_at"])
                out.append(r)
        if len(rows) < page:
            break
    return out


# -- live version --------------------------------------------------------------------------------------------------

async def version(conn: AsyncConnection, t: Tables) -> dict:
    (c,) = await _rows(conn, _q(VERSION, t), {})
    lo = (c["candle"].timestamp() - 7200) if c["candle"] else 0
    (m,) = await _rows(conn, _q(VERSION_MENTIONS, t), {"lo": lo})
    return {"candle": _ts(c["candle"]), "emitted": _ts(c["emitted"]), "mention": _ts(m["mention"]),
            "mention_emitted": _ts(m["mention_emitted"]), "mention_rows": m["mention_rows"]}


# -- the price–community link (the flows' marts; lag k > 0: the community at t goes with the market at t+k) ----------
# Lead–lag bars and the verdict of one market and metric; the ranking of every market by the strength of its link;
# the rolling correlations and mention spikes on the candle chart's buckets. The marts are rebuilt by the flows'
# `refresh_marts`; until it has run (or while the reader may not read them) the panels say so, see app.py.

LINK_METRICS = {"mentions_absret": "mentions vs |return|", "mentions_ret": "mentions vs return",
                "sentiment_ret": "sentiment vs return"}
DEFAULT_LINK_METRIC = "mentions_absret"
VERDICTS = ("community_leads", "community_follows", "together", "no_link", "insufficient_data")
SIGNIFICANT_VERDICTS = ("community_leads", "community_follows", "together")

LEAD_LAG = """
SELECT lag_minutes, corr, n, p_value, significant, as_of
FROM {ll} WHERE market = %(market)s AND metric = %(metric)s
ORDER BY lag_minutes
"""
LINK_SUMMARY = """
SELECT best_lag, best_corr, p_value, p_adjusted, verdict, n, window_start, window_end, as_of
FROM {ls} WHERE market = %(market)s AND metric = %(metric)s
"""
# significant links first (a verdict other than no_link / insufficient_data), then by |best_corr|; markets without
# enough data last
LINK_RANKING = """
SELECT market, best_lag, best_corr, p_value, p_adjusted, verdict, n, as_of
FROM {ls} WHERE metric = %(metric)s
ORDER BY verdict IN ('community_leads', 'community_follows', 'together') DESC, verdict = 'insufficient_data',
         abs(nullif(best_corr, 'NaN')) DESC NULLS LAST, market
LIMIT %(limit)s
"""
# the rolling correlations (per minute in the mart) on the chart's buckets: the mean over each bucket's minutes
ROLLING = """
SELECT extract(epoch FROM b)::bigint AS time, corr_mentions_absret, corr_sentiment_ret FROM (
  SELECT date_bin(make_interval(secs => %(step)s), bucket_start, timestamptz 'epoch') AS b,
         avg(corr_mentions_absret) AS corr_mentions_absret, avg(corr_sentiment_ret) AS corr_sentiment_ret
  FROM {pc} WHERE market = %(market)s AND bucket_start >= to_timestamp(%(since)s)
  GROUP BY 1 ORDER BY 1 DESC LIMIT %(limit)s) x
ORDER BY b
"""
# mention spikes on the chart's buckets: one marker per bucket, the strongest spike's z-score
SPIKES = """
SELECT extract(epoch FROM b)::bigint AS time, mentions, zscore, spikes FROM (
  SELECT date_bin(make_interval(secs => %(step)s), bucket_start, timestamptz 'epoch') AS b,
         max(mentions) AS mentions, max(zscore) AS zscore, count(*) AS spikes
  FROM {ms} WHERE market = %(market)s AND bucket_start >= to_timestamp(%(since)s)
  GROUP BY 1 ORDER BY 1 DESC LIMIT %(limit)s) x
ORDER BY b
"""
LINK_VERSION = "SELECT max(as_of) AS link_as_of, count(*) AS link_rows FROM {ls}"


def _m(text: str, t: Tables) -> sql.Composed:
    return sql.SQL(text).format(ll=t.mart("lead_lag"), ls=t.mart("link_summary"), pc=t.mart("price_community"),
                                ms=t.mart("mention_spikes"))


def _num(v):
    """float8 from the marts as JSON: NaN / ±inf (a correlation of a constant series) become null."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def p_text(p: float | None) -> str:
    if p is None:
        return "p = —"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {min(p, 1.0):.2g}"  # two significant digits: 0.003, 0.049, 0.5, 1


def link_sentence(summary: dict | None, n_lags: int) -> dict:
    """The lead–lag verdict in words, with the corrected p-value (the lag convention of the marts: best_lag > 0
    means the community moves first)."""
    verdict = summary["verdict"] if summary else "insufficient_data"
    lag = summary.get("best_lag") if summary else None
    if verdict == "community_leads" and lag is not None:
        words = f"community leads by {abs(lag)} min"
    elif verdict == "community_follows" and lag is not None:
        words = f"community follows by {abs(lag)} min"
    elif verdict == "together":
        words = "moves together"
    elif verdict == "no_link":
        words = "no significant link"
    elif verdict == "insufficient_data":
        words = "not enough data yet"
    else:  # a verdict this dashboard does not know: shown as it is, never guessed
        words = f"verdict {verdict!r}"
    if summary is None or verdict == "insufficient_data":
        p = ""
    else:
        over = f"Bonferroni over {n_lags} lags" if n_lags else "Bonferroni-corrected"
        p = f"{p_text(summary.get('p_adjusted'))} ({over})"
    return {"verdict": verdict, "sentence": words, "p_text": p,
            "significant": verdict in SIGNIFICANT_VERDICTS}


async def link(conn: AsyncConnection, t: Tables, market: str, metric: str) -> dict:
    """The lead–lag bars and the verdict of one market and metric."""
    if not MARKET_RE.match(market) or metric not in LINK_METRICS:
        raise ValueError(f"bad market or metric {market!r} {metric!r}")
    p = {"market": market, "metric": metric}
    lags = await _rows(conn, _m(LEAD_LAG, t), p)
    summ = await _rows(conn, _m(LINK_SUMMARY, t), p)
    summary = None
    if summ:
        r = summ[0]
        summary = {"best_lag": r["best_lag"], "best_corr": _num(r["best_corr"]), "p_value": _num(r["p_value"]),
                   "p_adjusted": _num(r["p_adjusted"]), "verdict": r["verdict"], "n": r["n"],
                   "window_start": _ts(r["window_start"]), "window_end": _ts(r["window_end"]),
                   "as_of": _ts(r["as_of"])}
    return {
        "market": market, "metric": metric, "metric_label": LINK_METRICS[metric],
        "state": "ok" if summary or lags else "no_data",
        "lags": [{"lag": r["lag_minutes"], "corr": _num(r["corr"]), "n": r["n"], "p_value": _num(r["p_value"]),
                  "significant": bool(r["significant"])} for r in lags],
        "summary": summary, **link_sentence(summary, len(lags)),
        "as_of": summary["as_of"] if summary else (_ts(lags[0]["as_of"]) if lags else None),
    }


async def link_ranking(conn: AsyncConnection, t: Tables, metric: str, limit: int = 50) -> dict:
    """Markets ranked by the strength of their link: significant first, then by |best_corr|."""
    if metric not in LINK_METRICS:
        raise ValueError(f"bad metric {metric!r}")
    rows = await _rows(conn, _m(LINK_RANKING, t), {"metric": metric, "limit": limit})
    out = []
    for i, r in enumerate(rows, 1):
        words = link_sentence(dict(r), 0)
        out.append({"rank": i, "market": r["market"], "verdict": r["verdict"], "sentence": words["sentence"],
                    "significant": words["significant"], "best_lag": r["best_lag"],
                    "best_corr": _num(r["best_corr"]),
                    "abs_corr": abs(_num(r["best_corr"])) if _num(r["best_corr"]) is not None else None,
                    "p_value": _num(r["p_value"]), "p_adjusted": _num(r["p_adjusted"]), "n": r["n"],
                    "as_of": _ts(r["as_of"])})
    return {"metric": metric, "metric_label": LINK_METRICS[metric], "state": "ok" if out else "no_data",
            "markets": out}


async def link_series(conn: AsyncConnection, t: Tables, market: str, tf: str, since: int, limit: int) -> dict:
    """The rolling correlations and the mention spikes of `market` on the `tf` buckets from `since` (epoch s)."""
    if not MARKET_RE.match(market):
        raise ValueError(f"bad market {market!r}")
    p = {"market": market, "since": since, "limit": limit, "step": TIMEFRAMES[tf]}
    rolling = await _rows(conn, _m(ROLLING, t), p)
    spikes = await _rows(conn, _m(SPIKES, t), p)
    return {
        "market": market, "tf": tf, "step": TIMEFRAMES[tf], "state": "ok" if rolling or spikes else "no_data",
        "rolling": [{"time": r["time"], "corr_mentions_absret": _num(r["corr_mentions_absret"]),
                     "corr_sentiment_ret": _num(r["corr_sentiment_ret"])} for r in rolling],
        "spikes": [{"time": r["time"], "mentions": r["mentions"], "zscore": _num(r["zscore"]),
                    "spikes": r["spikes"]} for r in spikes],
    }


async def link_version(conn: AsyncConnection, t: Tables) -> dict:
    """When the link marts were last rebuilt (for the live stream); absent marts are None, not an error."""
    (r,) = await _rows(conn, _m(LINK_VERSION, t), {})
    return {"link_as_of": _ts(r["link_as_of"]), "link_rows": r["link_rows"]}
