"""A synthetic day of gold and silver data in a scratch schema, for the dashboard's tests and benchmark.

The tables mirror the sink's model (one `candles` table with an `interval` column, `mentions_1m`, `posts`) with
the same primary keys and indexes, so query plans match production. Written with COPY as the owner role; the
read-only dashboard role gets USAGE and SELECT, like on the real schemas.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
    candles_1m: dict[str, list[tuple]] = field(default_factory=dict)  # market -> rows (bucket, o, h, l, c, v, qv, n)
    mentions: dict[str, list[tuple]] = field(default_factory=dict)  # market -> (bucket, mentions, pos, neg)
    posts: list[dict] = field(default_factory=list)


def _rollup(rows: list[tuple], seconds: int) -> list[tuple]:
    out: dict[datetime, list] = {}
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
    return day


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
        conn.execute(sql.SQL("ANALYZE {s}.candles").format(s=s))
        conn.execute(sql.SQL("ANALYZE {s}.mentions_1m").format(s=s))
        conn.execute(sql.SQL("ANALYZE {s}.posts").format(s=s))
        conn.commit()


def drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
