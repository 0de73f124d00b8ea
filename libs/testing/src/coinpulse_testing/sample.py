"""A synthetic day of gold and silver data in a scratch schema, for the dashboard's tests and benchmark.

The tables mirror the sink's model (one `candles` table with an `interval` column, `mentions_1m`, `posts`) with
the same primary keys and indexes, so query plans match production. Written with COPY as the owner role; the
read-only dashboard role gets USAGE and SELECT, like on the real schemas.

The same schema also holds the flows' link marts (`lead_lag`, `link_summary`, `price_community`, `mention_spikes`,
columns of the link marts contract in flows/marts.py) with known answers: KRW-BTC's community leads by 3 minutes,
KRW-ETH's follows by 2, KRW-XRP's moves together, KRW-SOL has too little data, KRW-HBAR has no link rows at all,
the others show no significant link (see `LINK_CASES`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.candles (
  market text NOT NULL, "interval" text NOT NULL, bucket_start timestamptz NOT NULL, open float8 NOT NULL,
  high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL,
  quote_volume float8 NOT NULL, vwap float8 NOT NULL, trade_count bigint NOT NULL, buy_volume float8 NOT NULL,
  sell_volume float8 NOT NULL, first_trade_at timestamptz NOT NULL, last_trade_at timestamptz NOT NULL,
  revision int NOT NULL, emitted_at timestamptz NOT NULL,
  PRIMARY KEY (market, "interval", bucket_start));
CREATE INDEX ON {s}.candles (market, bucket_start);
CREATE INDEX ON {s}.candles ("interval", bucket_start);
CREATE TABLE {s}.mentions_1m (
  market text NOT NULL, bucket_start timestamptz NOT NULL, mentions bigint NOT NULL, posts bigint NOT NULL,
  comments bigint NOT NULL, positive bigint NOT NULL, negative bigint NOT NULL, sentiment float8 NOT NULL,
  revision int NOT NULL, emitted_at timestamptz NOT NULL, PRIMARY KEY (market, bucket_start));
CREATE TABLE {s}.posts (
  gallery text NOT NULL, post_no bigint NOT NULL, title text NOT NULL, body text, head text, author_hash text NOT NULL,
  ip_hash text, is_member boolean NOT NULL, created_at timestamptz NOT NULL, views int NOT NULL,
  recommend int NOT NULL, reply_count int NOT NULL, deleted boolean NOT NULL, url text, fetched_at timestamptz NOT NULL,
  images text[], PRIMARY KEY (gallery, post_no, created_at));
CREATE INDEX ON {s}.posts (gallery, created_at);
GRANT USAGE ON SCHEMA {s} TO coinpulse_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO coinpulse_reader;
"""

# the link marts of the flows (contract: flows/marts.py); price_community and mention_spikes as the flows create them
LINK_DDL = """
CREATE TABLE {s}.lead_lag (
  market text NOT NULL, metric text NOT NULL, lag_minutes int NOT NULL, corr float8, n bigint, p_value float8,
  significant bool, as_of timestamptz NOT NULL, PRIMARY KEY (market, metric, lag_minutes));
CREATE TABLE {s}.link_summary (
  market text NOT NULL, metric text NOT NULL, best_lag int, best_corr float8, p_value float8, p_adjusted float8,
  verdict text NOT NULL, n bigint, window_start timestamptz, window_end timestamptz, as_of timestamptz NOT NULL,
  PRIMARY KEY (market, metric));
CREATE TABLE {s}.price_community (
  market text NOT NULL, bucket_start timestamptz NOT NULL, close float8, ret float8, volume float8,
  vwap_60 float8, mentions bigint NOT NULL, sentiment float8, corr_mentions_absret float8,
  corr_sentiment_ret float8, baseline_mean float8, baseline_std float8, zscore float8,
  as_of timestamptz NOT NULL, PRIMARY KEY (market, bucket_start));
CREATE TABLE {s}.mention_spikes (
  market text NOT NULL, bucket_start timestamptz NOT NULL, mentions bigint NOT NULL, baseline_mean float8,
  baseline_std float8, zscore float8, detected_at timestamptz NOT NULL, published boolean NOT NULL DEFAULT false,
  PRIMARY KEY (market, bucket_start));
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO coinpulse_reader;
"""
LINK_METRICS = ("mentions_absret", "mentions_ret", "sentiment_ret")
MAX_LAG = 15  # lags -15..+15: 31 tested, Bonferroni over 31
ALPHA = 0.05
# (market, metric) -> (verdict, best_lag, best_corr, p_adjusted); every other market and metric: no_link
LINK_CASES = {
    ("KRW-BTC", "mentions_absret"): ("community_leads", 3, 0.42, 0.003),
    ("KRW-ETH", "mentions_absret"): ("community_follows", -2, 0.31, 0.012),
    ("KRW-XRP", "mentions_absret"): ("together", 0, 0.27, 0.021),
    ("KRW-SOL", "mentions_absret"): ("insufficient_data", None, None, None),
    ("KRW-BTC", "sentiment_ret"): ("community_leads", 1, 0.18, 0.04),
    ("KRW-DOGE", "mentions_ret"): ("community_follows", -7, -0.22, 0.008),
}
NO_LINK_MARKET = "KRW-HBAR"
SPIKE_MIN_MENTIONS = 15

COINS = [("BTC", "비트코인", 95_000_000.0), ("ETH", "이더리움", 4_800_000.0), ("XRP", "리플", 850.0),
         ("DOGE", "도지코인", 210.0), ("SOL", "솔라나", 230_000.0), ("ADA", "에이다", 1_100.0),
         ("TRX", "트론", 190.0), ("ETC", "이더리움클래식", 38_000.0), ("AVAX", "아발란체", 52_000.0),
         ("LINK", "체인링크", 24_000.0), ("DOT", "폴카닷", 9_500.0), ("BCH", "비트코인캐시", 620_000.0),
         ("SHIB", "시바이누", 0.034), ("NEAR", "니어", 7_000.0), ("ATOM", "코스모스", 11_000.0),
         ("SUI", "수이", 4_900.0), ("APT", "앱토스", 14_000.0), ("ARB", "아비트럼", 1_200.0),
         ("SEI", "세이", 600.0), ("HBAR", "헤데라", 310.0)]
MARKETS = [f"KRW-{c}" for c, _, _ in COINS]
XSS_TITLE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">비트코인 간다'


@dataclass
class SampleDay:
    """What was written, so tests can compute the expected answers independently."""
    schema: str
    end: datetime
    candles_1m: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # market -> rows (bucket, o, h, l, c, v, qv, n)
    mentions: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # market -> (bucket, mentions, pos, neg)
    posts: list[dict[str, Any]] = field(default_factory=list)
    # the link marts: (market, metric) -> summary dict / lead_lag rows (lag, corr, n, p_value, significant);
    # market -> price_community rows (bucket, corr_mentions_absret, corr_sentiment_ret) / spikes (bucket, mentions, z)
    link_summary: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lead_lag: dict[tuple[str, str], list[tuple[Any, ...]]] = field(default_factory=dict)
    rolling: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    spikes: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


def _rollup(rows: list[tuple[Any, ...]], seconds: int) -> list[tuple[Any, ...]]:
    out: dict[datetime, list[Any]] = {}
    for b, o, h, lo, c, v, qv, n in rows:
        key = datetime.fromtimestamp(b.timestamp() // seconds * seconds, UTC)
        cur = out.get(key)
        if cur is None:
            out[key] = [key, o, h, lo, c, v, qv, n]
        else:
            cur[2], cur[3], cur[4] = max(cur[2], h), min(cur[3], lo), c
            cur[5] += v
            cur[6] += qv
            cur[7] += n
    return [tuple(r) for r in out.values()]


def generate(schema: str, end: datetime | None = None, minutes: int = 1440, markets: int = 20,
             seed: int = 7) -> SampleDay:
    rnd = random.Random(seed)
    end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes)
    day = SampleDay(schema, end)
    for i, (coin, _ko, p0) in enumerate(COINS[:markets]):
        m = f"KRW-{coin}"
        sigma = 0.0006 * (1 + i % 7)  # distinct volatilities, so the ranking is well defined
        activity = 10 ** (3.2 - 0.09 * i)  # distinct trade values
        price, rows = p0, []
        for k in range(minutes):
            if k % 11 == 5 and i % 3 == 2:
                continue  # quiet minutes: no trades, no candle
            b = start + timedelta(minutes=k)
            o = price
            steps = [o * math.exp(rnd.gauss(0, sigma / 2)) for _ in range(3)]
            c = steps[-1]
            h, lo = max(o, *steps) * (1 + abs(rnd.gauss(0, sigma / 4))), min(o, *steps) * (1 - abs(rnd.gauss(0, sigma / 4)))
            n = max(1, int(rnd.expovariate(1 / 40)))
            v = activity * rnd.uniform(0.5, 1.5) / max(p0, 1e-9) ** 0.5
            qv = v * (o + h + lo + c) / 4
            rows.append((b, o, h, lo, c, v, qv, n))
            price = c
        day.candles_1m[m] = rows
        men = []
        for k in range(minutes):
            if rnd.random() < 0.35 - 0.01 * i:
                cnt = 1 + int(rnd.expovariate(1 / (6 - 0.2 * i)))
                pos, neg = rnd.randint(0, cnt), rnd.randint(0, cnt // 2)
                men.append((start + timedelta(minutes=k), cnt, pos, neg))
        day.mentions[m] = men
    for j in range(240):
        coin, ko, _ = COINS[j % markets]
        created = end - timedelta(minutes=j * 6 + 1)
        title = f"{ko} 오늘 분위기 어떰? #{j}" if j % 2 else f"{coin} 차트 보니까 #{j}"
        day.posts.append({"gallery": "bitcoins_new1", "post_no": 100_000 + j, "title": title,
                          "body": f"{ko} 얘기: 오늘 {coin} 거래량 많네", "created_at": created, "deleted": False})
    day.posts.append({"gallery": "bitcoins_new1", "post_no": 999_999, "title": XSS_TITLE,
                      "body": "<b>bold?</b> 비트코인", "created_at": end - timedelta(seconds=30), "deleted": False})
    day.posts.append({"gallery": "bitcoins_new1", "post_no": 999_998, "title": "삭제된 비트코인 글",
                      "body": None, "created_at": end - timedelta(seconds=20), "deleted": True})
    _generate_link(day, start, minutes, rnd)
    return day


def _generate_link(day: SampleDay, start: datetime, minutes: int, rnd: random.Random) -> None:
    n_lags = 2 * MAX_LAG + 1
    for i, m in enumerate(day.candles_1m):
        # rolling 60-minute correlations: smooth waves in [-1, 1], undefined in the first hour (the warm-up)
        day.rolling[m] = [(start + timedelta(minutes=k),
                           None if k < 60 else max(-1.0, min(1.0, 0.2 + 0.5 * math.sin(k / 23 + i))),
                           None if k < 60 else 0.35 * math.cos(k / 17 + 2 * i)) for k in range(minutes)]
        day.spikes[m] = [(b, cnt, (cnt - 2.0) / 2.5) for b, cnt, _, _ in day.mentions[m] if cnt >= SPIKE_MIN_MENTIONS]
        if m == NO_LINK_MARKET:
            continue
        for metric in LINK_METRICS:
            verdict, best, corr, p_adj = LINK_CASES.get(
                (m, metric), ("no_link", (i * 5 + len(metric)) % n_lags - MAX_LAG, 0.03 + 0.011 * i, 0.4 + 0.02 * i))
            rows: list[tuple[int, float | None, int, float | None, bool]]
            if verdict == "insufficient_data":
                rows = [(k, None, 9, None, False) for k in range(-MAX_LAG, MAX_LAG + 1)]
                day.link_summary[(m, metric)] = {"best_lag": None, "best_corr": None, "p_value": None,
                                                 "p_adjusted": None, "verdict": verdict, "n": 9}
            else:
                assert best is not None and corr is not None and p_adj is not None  # only insufficient_data has none
                p_best = p_adj / n_lags
                rows = []
                for k in range(-MAX_LAG, MAX_LAG + 1):
                    d = abs(k - best)
                    c = corr if d == 0 else corr * math.exp(-d / 2.5) + rnd.uniform(-0.02, 0.02)
                    if abs(c) >= abs(corr):  # the best lag stays the strongest
                        c = corr * 0.95
                    p = min(1.0, p_best * math.exp(1.5 * d))
                    rows.append((k, c, minutes - abs(k), p, p < ALPHA / n_lags))
                day.link_summary[(m, metric)] = {"best_lag": best, "best_corr": corr, "p_value": p_best,
                                                 "p_adjusted": min(1.0, p_adj), "verdict": verdict,
                                                 "n": minutes - abs(best)}
            day.lead_lag[(m, metric)] = rows


def write(dsn: str, day: SampleDay) -> None:
    s = sql.Identifier(day.schema)
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute(sql.SQL(DDL).format(s=s))
        emitted_lag = timedelta(seconds=62)
        with conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY {s}.candles FROM STDIN").format(s=s)) as cp:
            for m, rows in day.candles_1m.items():
                for tf, secs in (("1m", 60), ("5m", 300), ("1h", 3600)):
                    for b, o, h, lo, c, v, qv, n in (rows if secs == 60 else _rollup(rows, secs)):
                        bv = v * 0.55
                        cp.write_row((m, tf, b, o, h, lo, c, v, qv, qv / v, n, bv, v - bv, b,
                                      b + timedelta(seconds=secs - 1), 0, b + timedelta(seconds=secs) + emitted_lag))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {s}.mentions_1m FROM STDIN").format(s=s)) as cp:
            for m, rows in day.mentions.items():
                for b, cnt, pos, neg in rows:
                    cp.write_row((m, b, cnt, max(1, cnt // 2), cnt // 3, pos, neg, (pos - neg) / max(1, pos + neg), 0,
                                  b + timedelta(seconds=75)))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {s}.posts FROM STDIN").format(s=s)) as cp:
            for p in day.posts:
                cp.write_row((p["gallery"], p["post_no"], p["title"], p["body"], None, "anon", None, False,
                              p["created_at"], 10 + p["post_no"] % 90, p["post_no"] % 7, p["post_no"] % 5,
                              p["deleted"], f"https://gall.dcinside.com/board/view/?id=bitcoins_new1&no={p['post_no']}",
                              min(p["created_at"] + timedelta(seconds=40), day.end), None))
        _write_link(conn, day, s)
        conn.execute(sql.SQL("ANALYZE {s}.candles").format(s=s))
        conn.execute(sql.SQL("ANALYZE {s}.mentions_1m").format(s=s))
        conn.execute(sql.SQL("ANALYZE {s}.posts").format(s=s))
        conn.commit()


def _write_link(conn: psycopg.Connection, day: SampleDay, s: sql.Identifier) -> None:
    conn.execute(sql.SQL(LINK_DDL).format(s=s))
    as_of = day.end
    closes = {m: {r[0]: r[4] for r in rows} for m, rows in day.candles_1m.items()}
    counts = {m: {b: (cnt, (pos - neg) / max(1, pos + neg)) for b, cnt, pos, neg in rows}
              for m, rows in day.mentions.items()}
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {s}.price_community FROM STDIN").format(s=s)) as cp:
        for m, rows in day.rolling.items():
            for b, c1, c2 in rows:
                cnt, sent = counts[m].get(b, (0, None))
                cp.write_row((m, b, closes[m].get(b), None, None, None, cnt, sent, c1, c2, None, None, None, as_of))
    with conn.cursor() as cur, cur.copy(sql.SQL(
            "COPY {s}.mention_spikes (market, bucket_start, mentions, baseline_mean, baseline_std, zscore, "
            "detected_at) FROM STDIN").format(s=s)) as cp:
        for m, rows in day.spikes.items():
            for b, cnt, z in rows:
                cp.write_row((m, b, cnt, 2.0, 2.5, z, b + timedelta(minutes=1)))
    lo = day.end - timedelta(minutes=240)
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {s}.lead_lag FROM STDIN").format(s=s)) as cp:
        for (m, metric), rows in day.lead_lag.items():
            for k, c, n, p, sig in rows:
                cp.write_row((m, metric, k, c, n, p, sig, as_of))
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {s}.link_summary FROM STDIN").format(s=s)) as cp:
        for (m, metric), r in day.link_summary.items():
            cp.write_row((m, metric, r["best_lag"], r["best_corr"], r["p_value"], r["p_adjusted"], r["verdict"],
                          r["n"], lo, day.end, as_of))


def drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
