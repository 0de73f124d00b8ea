"""Gold marts over generated candles and mentions (spike published once to the alert topic), and a backfill from
Kafka bronze that repairs a broken range and converges on re-runs; the backfill CLI is run as a process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from coinpulse_common.avro import TopicCodec, schema_text
from coinpulse_common.kafka import admin, consumer, producer
from coinpulse_flows import marts
from coinpulse_flows.backfill import rebuild
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _topic(s, name: str, schema: str) -> None:
    a = admin(s)  # keep the handle alive until the future resolves
    a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)
    SchemaRegistryClient({"url": s.registry}).register_schema(f"{name}-value", Schema(schema_text(schema), "AVRO"))


def _gold_tables(s, schema):
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        # as gold.candles of the sink's model: all intervals in one table
        c.execute(f"""CREATE TABLE {schema}.candles (market text, interval text, bucket_start timestamptz,
            open float8, high float8, low float8, close float8, volume float8, quote_volume float8, vwap float8,
            trade_count bigint, buy_volume float8, sell_volume float8, first_trade_at timestamptz,
            last_trade_at timestamptz, revision int, emitted_at timestamptz,
            PRIMARY KEY (market, interval, bucket_start))""")
        c.execute(f"""CREATE TABLE {schema}.mentions_1m (market text, bucket_start timestamptz, mentions bigint,
            posts bigint, comments bigint, positive bigint, negative bigint, sentiment float8, revision int,
            emitted_at timestamptz, PRIMARY KEY (market, bucket_start))""")


def test_marts_rank_compute_vwap_and_publish_a_spike_once(flow_env, unique):
    s, schema = flow_env["settings"], flow_env["schema"]
    alert_topic = f"test.mention.alert.{unique}"
    _topic(s, alert_topic, "mention_alert")
    s = s.model_copy(update={"alert_topic": alert_topic, "mart_window_minutes": 180, "link_window_minutes": 120})
    _gold_tables(s, schema)
    markets = {f"KRW-M{i}": 10.0 * (i + 1) for i in range(12)}  # higher index: more trade value
    spike_at = T0 + timedelta(minutes=150)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        for i, (m, base) in enumerate(markets.items()):
            for k in range(180):
                b = T0 + timedelta(minutes=k)
                close = base * (1 + 0.001 * (i + 1) * math.sin(k))  # volatility grows with i
                vol = 1.0 + (k % 3)
                c.execute(f"INSERT INTO {schema}.candles (market, interval, bucket_start, open, high, low, close, "
                          "volume, quote_volume, vwap, trade_count) VALUES (%s, '1m', %s, %s, %s, %s, %s, %s, %s, %s, 3)",
                          (m, b, close, close, close, close, vol, close * vol, close))
            # rollups in the same table, ranked the other way round: the marts must read 1-minute rows only
            c.execute(f"INSERT INTO {schema}.candles (market, interval, bucket_start, open, high, low, close, volume, "
                      "quote_volume, vwap, trade_count) VALUES (%s, '1h', %s, 1, 1e6, 1e-6, 1, 1e9, %s, 1, 3)",
                      (m, T0 + timedelta(hours=1), 1e9 * (12 - i)))
        for k in range(180):  # steady chatter about M0, then a burst
            n = 40 if T0 + timedelta(minutes=k) == spike_at else 1 + k % 2
            c.execute(f"INSERT INTO {schema}.mentions_1m (market, bucket_start, mentions, posts, comments, sentiment)"
                      " VALUES ('KRW-M0', %s, %s, 1, 0, 0.5)", (T0 + timedelta(minutes=k), n))
    as_of = T0 + timedelta(minutes=180)
    r = marts.refresh_marts(s, as_of)
    assert r.top_markets == 10 and r.new_spikes == 1 and r.published == 1
    m = s.marts_schema
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        top = c.execute(f"SELECT market FROM {m}.top_markets ORDER BY rank").fetchall()
        assert [t[0] for t in top] == [f"KRW-M{i}" for i in range(11, 1, -1)]
        vol = c.execute(f"SELECT market FROM {m}.volatility WHERE rank = 1").fetchone()[0]
        assert vol == "KRW-M11"
        vwap, expected = c.execute(
            f"SELECT v.vwap, (SELECT sum(quote_volume) / sum(volume) FROM {schema}.candles "
            f"WHERE market = 'KRW-M3' AND interval = '1m' AND bucket_start >= %s) FROM {m}.vwap v "
            "WHERE market = 'KRW-M3' AND window_minutes = 60", (as_of - timedelta(minutes=60),)).fetchone()
        assert vwap == pytest.approx(expected, rel=1e-12)
        spike = c.execute(f"SELECT market, bucket_start, mentions, zscore, published FROM {m}.mention_spikes").fetchall()
        assert spike == [("KRW-M0", spike_at, 40, pytest.approx(spike[0][3]), True)] and spike[0][3] > s.spike_z
        n_link, n_corr = c.execute(f"SELECT count(*), count(corr_mentions_absret) FROM {m}.price_community "
                                   "WHERE market = 'KRW-M0'").fetchone()
        assert n_link == 120 and n_corr > 100
        lags = c.execute(f"SELECT lag_minutes FROM {m}.lead_lag WHERE market = 'KRW-M0' AND metric = 'mentions_ret' "
                         "ORDER BY 1").fetchall()
        assert [x[0] for x in lags] == list(range(-s.link_max_lag_minutes, s.link_max_lag_minutes + 1))
    again = marts.refresh_marts(s, as_of)
    assert (again.new_spikes, again.published) == (0, 0)
    c = consumer(f"test-{unique}", s)
    c.subscribe([alert_topic])
    got, deadline = [], time.monotonic() + 20
    codec = TopicCodec(alert_topic, s, schema_topic="mention.alert")
    while time.monotonic() < deadline and not got:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.key().decode(), codec.decode(msg.value())))
    c.close()
    assert got[0][0] == f"KRW-M0|{int(spike_at.timestamp() * 1000)}" and got[0][1]["mentions"] == 40


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (t - epoch) // step * step


def _expected_rollups(minutes: list[tuple], lo: datetime, hi: datetime) -> list[tuple]:
    """5m and 1h candles over [lo, hi) from 1-minute rows (market, bucket, o, h, l, c, volume, trade_count)."""
    out = []
    for iv, step in (("1h", timedelta(hours=1)), ("5m", timedelta(minutes=5))):
        groups: dict[tuple, list] = {}
        for row in minutes:
            b = _floor(row[1], step)
            if b < hi and b + step > lo:
                groups.setdefault((row[0], b), []).append(row)
        for (m, b), rows in sorted(groups.items()):
            out.append((iv, m, b, rows[0][2], max(r[3] for r in rows), min(r[4] for r in rows), rows[-1][5],
                        sum(r[6] for r in rows), sum(r[7] for r in rows)))
    return out


def _frame(market, sid, ts: datetime, price, vol, side="BID", simple=False):
    ms = int(ts.timestamp() * 1000)
    if simple:
        return {"ty": "trade", "cd": market, "tp": price, "tv": vol, "ab": side, "ttms": ms, "sid": sid, "st": "REALTIME"}
    return {"type": "trade", "code": market, "trade_price": price, "trade_volume": vol, "ask_bid": side,
            "trade_timestamp": ms, "sequential_id": sid, "stream_type": "REALTIME"}


def test_backfill_from_kafka_repairs_a_range_and_converges(flow_env, unique):
    s, schema = flow_env["settings"], flow_env["schema"]
    T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)  # noqa: N806
    topic = f"test.upbit.raw.{unique}"
    _topic(s, topic, "raw_frame")
    s = s.model_copy(update={"backfill_topic": topic})
    _gold_tables(s, schema)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.trades (market text NOT NULL, sequential_id bigint NOT NULL,
            trade_timestamp timestamptz NOT NULL, price float8, volume float8, ask_bid text, prev_closing_price float8,
            change text, change_price float8, stream_type text, backfilled boolean, received_at timestamptz,
            PRIMARY KEY (market, sequential_id))""")
        # what a parsing bug left behind: a wrong trade, a wrong candle and a wrong 5m rollup inside the range
        c.execute(f"INSERT INTO {schema}.trades (market, sequential_id, trade_timestamp, price, volume, ask_bid) "
                  "VALUES ('KRW-BTC', 999, %s, 1, 1, 'BID')", (T0 + timedelta(seconds=1),))
        ins = (f"INSERT INTO {schema}.candles (market, interval, bucket_start, open, high, low, close, volume, "
               "quote_volume, vwap, trade_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s)")
        c.execute(ins, ("KRW-BTC", "1m", T0, 1, 1, 1, 1, 1, 1, 1))
        c.execute(ins, ("KRW-BTC", "5m", _floor(T0, timedelta(minutes=5)), 1, 1, 1, 1, 1, 1, 1))
        # right rows outside the range: a minute before it (its rollups take it in), a day-old hour (untouched)
        c.execute(ins, ("KRW-BTC", "1m", T0 - timedelta(minutes=1), 95.0, 96.0, 94.0, 95.5, 2.0, 191.0, 2))
        c.execute(ins, ("KRW-BTC", "1h", _floor(T0, timedelta(hours=1)) - timedelta(days=1), 7, 8, 6, 7, 1, 7, 1))
    codec = TopicCodec(topic, s, schema_topic="upbit.raw")
    prod = producer(s)
    frames = [
        [_frame("KRW-BTC", 1, T0 + timedelta(seconds=10), 100.0, 1.0)],
        [_frame("KRW-BTC", 2, T0 + timedelta(seconds=50), 110.0, 2.0, "ASK", simple=True)],
        [_frame("KRW-BTC", 1, T0 + timedelta(seconds=10), 100.0, 1.0)],  # duplicate
        [_frame("KRW-BTC", 3, T0 + timedelta(seconds=30), 90.0, 1.0), _frame("KRW-ETH", 7, T0 + timedelta(minutes=1), 5.0, 4.0)],
        "{broken",
        [_frame("KRW-BTC", 4, T0 + timedelta(minutes=3), 1.0, 1.0)],  # outside [T0, T0+2m)
    ]
    for i, f in enumerate(frames):
        # received a second after the trade (the broken frame with the one before it)
        recv_ms = int((T0 + timedelta(seconds=11 + 10 * i)).timestamp() * 1000)
        value = {"source": "test", "connection_id": "c1", "seq": i, "received_at": recv_ms,
                 "payload": f if isinstance(f, str) else json.dumps(f), "market": None, "url": None}
        prod.produce(topic, key=b"c1", value=codec.encode(value), timestamp=recv_ms)
    assert prod.flush(10) == 0
    # bronze is found by receive time; the trades' own times are T0..T0+3m; rebuild [T0, T0+2m)
    r = rebuild(s, T0, T0 + timedelta(minutes=2), "kafka")
    assert (r.frames, r.trades, r.problems) == (6, 4, {"bad_json": 1})
    q = (f"SELECT market, bucket_start, open, high, low, close, volume, quote_volume, trade_count, buy_volume, "
         f"sell_volume FROM {schema}.candles WHERE interval = '1m' AND bucket_start >= %s ORDER BY 1, 2")
    q_rollups = (f"SELECT interval, market, bucket_start, open, high, low, close, volume, trade_count "
                 f"FROM {schema}.candles WHERE interval <> '1m' ORDER BY 1, 2, 3")
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        candles = c.execute(q, (T0,)).fetchall()
        assert candles == [("KRW-BTC", T0, 100.0, 110.0, 90.0, 110.0, 4.0, 100.0 + 220.0 + 90.0, 3, 2.0, 2.0),
                           ("KRW-ETH", T0 + timedelta(minutes=1), 5.0, 5.0, 5.0, 5.0, 4.0, 20.0, 1, 4.0, 0.0)]
        assert c.execute(f"SELECT count(*) FROM {schema}.trades WHERE sequential_id = 999").fetchone()[0] == 0
        rollups = c.execute(q_rollups).fetchall()
        minutes = c.execute(f"SELECT market, bucket_start, open, high, low, close, volume, trade_count "
                            f"FROM {schema}.candles WHERE interval = '1m' ORDER BY 1, 2").fetchall()
    assert rollups == sorted(_expected_rollups(minutes, T0, T0 + timedelta(minutes=2)) + [
        ("1h", "KRW-BTC", _floor(T0, timedelta(hours=1)) - timedelta(days=1), 7, 8, 6, 7, 1, 1)])
    # the CLI, as `coinpulse backfill` runs it, converges to the same rows
    env = {**os.environ, "COINPULSE_FLOWS_TRADES_TABLE": s.trades_table, "COINPULSE_FLOWS_CANDLES_TABLE": s.candles_table,
           "COINPULSE_BACKFILL_TOPIC": topic}
    p = subprocess.run([sys.executable, "-m", "coinpulse_flows", "backfill", "--from", T0.isoformat(),
                        "--to", (T0 + timedelta(minutes=2)).isoformat()], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["trades"] == 4
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        assert c.execute(q, (T0,)).fetchall() == candles
        assert c.execute(q_rollups).fetchall() == rollups
        assert c.execute(f"SELECT count(*) FROM {schema}.trades").fetchone()[0] == 4


@pytest.mark.slow  # tens of seconds: `make test-fast` leaves it to `make test`
def test_backfill_chosen_by_ingestion_time_and_its_dry_run(flow_env, unique):
    """`--loaded-from/--loaded-to` repairs the minutes of the trades received in that window; `--dry-run` says what
    it would replace (rows per table now and rebuilt) and changes nothing."""
    s, schema = flow_env["settings"], flow_env["schema"]
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    topic = f"test.upbit.raw.{unique}"
    _topic(s, topic, "raw_frame")
    s = s.model_copy(update={"backfill_topic": topic})
    _gold_tables(s, schema)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.trades (market text NOT NULL, sequential_id bigint NOT NULL,
            trade_timestamp timestamptz NOT NULL, price float8, volume float8, ask_bid text, prev_closing_price float8,
            change text, change_price float8, stream_type text, backfilled boolean, received_at timestamptz,
            PRIMARY KEY (market, sequential_id))""")
    codec = TopicCodec(topic, s, schema_topic="upbit.raw")
    prod = producer(s)
    # trades of minutes t0+3 and t0+4, received at t0+5m (a late batch); one of minute t0+1 received at t0+1m
    sent = [(1, t0 + timedelta(minutes=1, seconds=5), t0 + timedelta(minutes=1, seconds=6)),
            (2, t0 + timedelta(minutes=3, seconds=10), t0 + timedelta(minutes=5, seconds=1)),
            (3, t0 + timedelta(minutes=4, seconds=50), t0 + timedelta(minutes=5, seconds=2))]
    for sid, ts, recv in sent:
        recv_ms = int(recv.timestamp() * 1000)
        value = {"source": "upbit.ws", "connection_id": "c1", "seq": sid, "received_at": recv_ms,
                 "payload": json.dumps([_frame("KRW-BTC", sid, ts, 100.0 + sid, 1.0)]), "market": "KRW-BTC",
                 "url": None}
        prod.produce(topic, key=b"KRW-BTC", value=codec.encode(value), timestamp=recv_ms)
    assert prod.flush(10) == 0
    env = {**os.environ, "COINPULSE_FLOWS_TRADES_TABLE": s.trades_table, "COINPULSE_FLOWS_CANDLES_TABLE": s.candles_table,
           "COINPULSE_BACKFILL_TOPIC": topic}
    window = ["--loaded-from", (t0 + timedelta(minutes=5)).isoformat(),
              "--loaded-to", (t0 + timedelta(minutes=6)).isoformat()]

    def cli(*extra):
        return subprocess.run([sys.executable, "-m", "coinpulse_flows", "backfill", *window, *extra], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    p = cli("--dry-run")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert (out["start"], out["end"]) == ((t0 + timedelta(minutes=3)).isoformat(), (t0 + timedelta(minutes=5)).isoformat())
    assert out["dry_run"] is True and out["replace"][s.trades_table] == {"now": 0, "rebuilt": 2}
    assert out["replace"][f"{s.candles_table} 1m"] == {"now": 0, "rebuilt": 2}
    assert f"{s.trades_table}: 0 rows now, 2 after the rebuild" in p.stderr
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        assert c.execute(f"SELECT count(*) FROM {schema}.trades").fetchone()[0] == 0
        assert c.execute(f"SELECT count(*) FROM {schema}.candles").fetchone()[0] == 0
    p = cli()
    assert p.returncode == 0, p.stderr
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        assert [r[0] for r in c.execute(f"SELECT sequential_id FROM {schema}.trades ORDER BY 1")] == [2, 3]
        assert c.execute(f"SELECT count(*) FROM {schema}.candles WHERE interval = '1m'").fetchone()[0] == 2
