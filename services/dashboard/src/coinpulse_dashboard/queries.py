"""The dashboard's query layer: one SQL statement per panel, every one bounded by an index and a LIMIT.

All times are anchored on the data (the newest 1-minute candle), not on the wall clock, so a replayed dataset from
last week shows the same as live data. Every function takes an open psycopg AsyncConnection (from the pool) and
returns plain JSON-ready values; epoch seconds are what the chart library wants on its time axis.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

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

POSTS = """
WITH anchor AS (SELECT max(created_at) AS hi FROM {p})
SELECT gallery, post_no, title, left(coalesce(body, ''), %(snippet)s) AS snippet, created_at, views, recommend,
       reply_count, url
FROM {p}, anchor
WHERE created_at > anchor.hi - make_interval(hours => %(hours)s) AND NOT deleted
  AND (title ~* %(ci)s OR title ~ %(cs)s OR coalesce(body, '') ~* %(ci)s OR coalesce(body, '') ~ %(cs)s)
ORDER BY created_at DESC, post_no DESC
LIMIT %(limit)s
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

def _re_escape(word: str) -> str:
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", word)


@dataclass(frozen=True)
class MarketPatterns:
    ci: str  # Korean and Latin names, case-insensitive, at a word start
    cs: str  # tickers, case-sensitive, whole words


_NEVER = "(?!)"  # a regex that never matches (PostgreSQL ARE supports negative look-ahead)


@lru_cache(maxsize=4)
def load_aliases(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def market_patterns(market: str, aliases: dict) -> MarketPatterns:
    """Regexes that find a coin in post text, from the alias dictionary (the same data the mention counter uses);
    without an entry, the ticker of the market code. The counter's word rules, approximated for search: a Korean
    alias starts a Hangul word and ends it or is followed by one particle; Latin names and tickers are whole words."""
    entry = aliases.get("markets", {}).get(market) or {"tickers": [market.split("-", 1)[-1]]}
    particles = [_re_escape(p) for p in sorted(aliases.get("particles", []), key=len, reverse=True)]
    ko = [_re_escape(a) for a in entry.get("ko", [])]
    names = [_re_escape(a) for a in entry.get("names", [])]
    tickers = [_re_escape(a) for a in entry.get("tickers", [])]
    ci_parts = []
    if ko:
        tail = f"({'|'.join(particles)})?" if particles else ""
        ci_parts.append(f"(^|[^가-힣ㄱ-ㅎA-Za-z0-9])({'|'.join(sorted(ko, key=len, reverse=True))}){tail}($|[^가-힣])")
    if names:
        ci_parts.append(f"(^|[^A-Za-z0-9])({'|'.join(names)})($|[^A-Za-z0-9])")
    cs = f"(^|[^A-Za-z0-9])({'|'.join(tickers)})($|[^A-Za-z0-9])" if tickers else _NEVER
    return MarketPatterns("|".join(ci_parts) or _NEVER, cs)


async def posts(conn: AsyncConnection, t: Tables, market: str, patterns: MarketPatterns, limit: int = 20,
                hours: int = 24, snippet: int = 240) -> list[dict]:
    rows = await _rows(conn, _q(POSTS, t), {"ci": patterns.ci, "cs": patterns.cs, "limit": limit, "hours": hours,
                                            "snippet": snippet})
    for r in rows:
        r["created_at"] = _ts(r["created_at"])
    return rows


# -- live version --------------------------------------------------------------------------------------------------

async def version(conn: AsyncConnection, t: Tables) -> dict:
    (c,) = await _rows(conn, _q(VERSION, t), {})
    lo = (c["candle"].timestamp() - 7200) if c["candle"] else 0
    (m,) = await _rows(conn, _q(VERSION_MENTIONS, t), {"lo": lo})
    return {"candle": _ts(c["candle"]), "emitted": _ts(c["emitted"]), "mention": _ts(m["mention"]),
            "mention_emitted": _ts(m["mention_emitted"]), "mention_rows": m["mention_rows"]}
