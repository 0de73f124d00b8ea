"""Kafka -> Connect -> PostgreSQL (one row per key, revised candles replace), bronze -> S3, DLQs, health, metrics,
schema evolution and least privilege, against the running stack."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import psycopg
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_common.kafka import consumer
from coinpulse_common.s3 import client as s3_client
from coinpulse_sink import db
from coinpulse_sink.service import SinkService
from coinpulse_sink.settings import SinkSettings
from coinpulse_testing.kafka import read_messages
from coinpulse_testing.net import free_port
from coinpulse_testing.wait import wait_for
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from .conftest import now_ms, trade

pytestmark = [pytest.mark.integration, pytest.mark.slow]
POISON = b"\x00\x7f\xff\xff\xffnot avro"  # the Confluent wire format with schema id 2**31 - 1


def _service(ns, **kw) -> SinkService:
    s = SinkSettings(sink_namespace=ns.ns, sink_metrics_port=free_port(), sink_bronze_max_age_s=1.0,
                     sink_supervise_interval_s=1.0, **kw)
    svc = SinkService(s)
    svc.start()
    return svc


def _candle(market, bucket, revision, close, interval="1m"):
    return {"market": market, "interval": interval, "bucket_start": bucket, "open": 1.0, "high": max(2.0, close),
            "low": 0.5, "close": close, "volume": 3.0, "quote_volume": 4.0, "vwap": 4 / 3, "trade_count": 3 + revision,
            "buy_volume": 1.0, "sell_volume": 2.0, "first_trade_at": bucket + 1, "last_trade_at": bucket + 59_000,
            "revision": revision, "emitted_at": now_ms()}


def _post(no, title, t):
    return {"gallery": "bitcoins_new1", "post_no": no, "title": title, "body": None, "head": None,
            "author_hash": "a1", "ip_hash": None, "is_member": False, "created_at": t, "views": 1, "recommend": 0,
            "reply_count": 0, "deleted": False, "url": None, "fetched_at": t + 1000, "images": None}


def _comment(post_no, no, t):
    return {"gallery": "bitcoins_new1", "post_no": post_no, "comment_no": no, "parent_no": None,
            "author_hash": "c1", "ip_hash": None, "kind": "text", "text": f"comment {no}", "created_at": t,
            "deleted": False, "fetched_at": t + 1000}


def _frame(seq, t):
    return {"source": "upbit.ws", "connection_id": "c1", "seq": seq, "received_at": t,
            "payload": json.dumps({"type": "trade", "code": "KRW-BTC", "sequential_id": seq}), "market": "KRW-BTC",
            "url": None}


def _page(n, t):
    return {"source": "dcinside", "gallery": "bitcoins_new1", "kind": "list", "url": f"http://sim/list?page={n}",
            "status": 200, "fetched_at": t, "body": "<html>\u00a0코인</html>", "post_no": None, "page": n}


def test_topics_flow_into_postgres_once_per_key_and_bronze_into_s3(namespace):
    ns = namespace
    t = now_ms() - 120_000
    bucket = t - t % 60_000
    # silver: trades with a replayed duplicate, a ticker twice, a post re-crawled, comments
    for i in range(20):
        ns.send("upbit.trade", "KRW-BTC", trade(i, t0=t))
    for i in range(5):
        ns.send("upbit.trade", "KRW-BTC", trade(i, t0=t))  # replay: same identity
    # poison -> dlq.connect, behind a schema id no registry holds: a real bad record, kept at once. (Behind an id the
    # registry knows, such as 7, the rewinder replays it once and it is dead-lettered a second time: rewind.py.)
    ns.send_raw("upbit.trade", "KRW-BTC", POISON)
    tick = {"market": "KRW-ETH", "timestamp": t, "trade_price": 5.0, "opening_price": None, "high_price": None,
            "low_price": None, "prev_closing_price": None, "change": None, "signed_change_rate": None,
            "trade_volume": None, "acc_trade_volume_24h": None, "acc_trade_price_24h": None, "trade_timestamp": t,
            "stream_type": "REALTIME", "received_at": t}
    ns.send("upbit.ticker", "KRW-ETH", tick)
    ns.send("upbit.ticker", "KRW-ETH", tick)
    ns.send("dc.post", "bitcoins_new1/1", _post(1, "first", t))
    ns.send("dc.post", "bitcoins_new1/1", {**_post(1, "first (edited)", t), "views": 9})
    ns.send("dc.post", "bitcoins_new1/2", _post(2, "second", t + 5))
    for c in range(3):
        ns.send("dc.comment", f"bitcoins_new1/1/{c}", _comment(1, c, t + c))
        ns.send("dc.comment", f"bitcoins_new1/1/{c}", _comment(1, c, t + c))
    # gold: a candle and its revision; one per interval topic; a mention
    ns.send("candle.1m", f"KRW-BTC|{bucket}", _candle("KRW-BTC", bucket, 0, 1.5))
    ns.send("candle.1m", f"KRW-BTC|{bucket}", _candle("KRW-BTC", bucket, 1, 1.75))
    ns.send("candle.5m", f"KRW-BTC|{bucket}", _candle("KRW-BTC", bucket, 0, 9.0, "5m"))
    ns.send("candle.1h", f"KRW-BTC|{bucket}", _candle("KRW-BTC", bucket, 0, 8.0, "1h"))
    ns.send("mention.1m", f"KRW-BTC|{bucket}", {"market": "KRW-BTC", "bucket_start": bucket, "mentions": 4,
                                                "posts": 2, "comments": 2, "positive": 1, "negative": 0,
                                                "sentiment": 1.0, "revision": 0, "emitted_at": now_ms()})
    # bronze: frames across two hours, pages, one undecodable frame
    h0 = (t // 3_600_000) * 3_600_000
    for seq in range(6):
        ns.send("upbit.raw", "KRW-BTC", _frame(seq, h0 - 1000 if seq < 3 else h0 + 1000))
    ns.send_raw("upbit.raw", "KRW-BTC", b"garbage")
    ns.send("dc.raw", "u", _page(1, t))
    ns.flush()

    svc = _service(ns)
    try:
        q = ns.rows
        wait_for(lambda: q("SELECT count(*) FROM {silver}.trades")[0][0] == 20
                 and q("SELECT count(*) FROM {silver}.comments")[0][0] == 3
                 and q("SELECT count(*) FROM {gold}.candles")[0][0] == 3
                 and q("SELECT close FROM {gold}.candles WHERE interval = '1m'") == [(1.75,)]
                 and q("SELECT count(*) FROM {gold}.mentions_1m")[0][0] == 1
                 and q("SELECT title FROM {silver}.posts WHERE post_no = 1") == [("first (edited)",)]
                 and q("SELECT count(*) FROM {silver}.tickers")[0][0] == 1, 180,
                 lambda: f"rows; health: {json.dumps(svc.health())[:2000]}")
        assert q("SELECT count(*), count(DISTINCT (market, sequential_id)) FROM {silver}.trades") == [(20, 20)]
        got = q("SELECT sequential_id, price, volume, ask_bid, (extract(epoch FROM trade_timestamp) * 1000)::bigint "
                "FROM {silver}.trades ORDER BY 1")
        assert got == [(10_000 + i, 100.0, 0.5 + i, "BID" if i % 2 else "ASK", t + i) for i in range(20)]
        assert q("SELECT revision, trade_count FROM {gold}.candles WHERE interval = '1m'") == [(1, 4)]
        assert q("SELECT post_no, views FROM {silver}.posts ORDER BY 1") == [(1, 9), (2, 1)]
        # rows went to daily partitions, not the DEFAULT one
        assert q("SELECT DISTINCT tableoid::regclass::text FROM {silver}.trades")[0][0].endswith(
            "trades_p" + dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC).strftime("%Y%m%d"))

        # bronze objects: one per hour of upbit.raw, one for dc.raw, deterministic names
        s3 = s3_client(ns.settings)

        def keys():
            listed = s3.list_objects_v2(Bucket=ns.settings.s3_bucket, Prefix=f"{ns.ns}/").get("Contents", [])
            return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))  # S3Proxy lists folders too

        def hp(ms):
            d = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
            return f"dt={d:%Y-%m-%d}/hour={d:%H}"

        want = sorted([f"{ns.ns}/bronze/upbit/{hp(h0 - 1000)}/{ns.ns}.upbit.raw+0+0.jsonl",
                       f"{ns.ns}/bronze/upbit/{hp(h0 + 1000)}/{ns.ns}.upbit.raw+0+3.jsonl",
                       f"{ns.ns}/bronze/dc/{hp(t)}/{ns.ns}.dc.raw+0+0.jsonl"])
        wait_for(lambda: keys() == want, 60, lambda: f"bronze objects {want}, have {keys()}")
        body = s3.get_object(Bucket=ns.settings.s3_bucket, Key=want[1])
        lines = [json.loads(x) for x in body["Body"].read().splitlines()]
        assert [x["offset"] for x in lines] == [0, 1, 2]
        assert all(x["value"]["payload"].startswith('{"type": "trade"') for x in lines)
        page = json.loads(s3.get_object(Bucket=ns.settings.s3_bucket, Key=want[0])["Body"].read())
        assert page["value"]["body"] == "<html>\u00a0코인</html>" and page["value"]["fetched_at"] == t
        wait_for(lambda: q("SELECT count(*) FROM {bronze}.s3_objects")[0][0] == 3, 120, "ledger rows")

        # poison records: the garbage trade is in the Connect DLQ with its reason, the garbage frame in dlq.sink
        c = consumer(f"{ns.ns}-dlq-check", ns.settings)
        c.subscribe([ns.topic("dlq.connect"), ns.topic("dlq.sink")])
        seen: dict[str, list] = {}

        def poll():
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.setdefault(m.topic(), []).append(m)
            return len(seen) == 2

        wait_for(poll, 90, lambda: f"both dead-letter topics, have {list(seen)}")
        c.close()
        dead = seen[ns.topic("dlq.connect")][0]
        hdrs = {k: v for k, v in dead.headers()}
        assert dead.value() == POISON
        assert hdrs["__connect.errors.topic"] == ns.topic("upbit.trade").encode()
        assert "__connect.errors.exception.message" in hdrs
        from coinpulse_common.avro import decode_any

        letter = decode_any(ns.topic("dlq.sink"), seen[ns.topic("dlq.sink")][0].value())
        assert letter["service"] == "sink" and "undecodable" in letter["reason"] and letter["payload"] == b"garbage"

        # health and metrics
        port = svc.s.sink_metrics_port
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, 120,
                 lambda: httpx.get(f"http://127.0.0.1:{port}/health").text)
        h = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert set(h["connect"]["connectors"]) == {f"{ns.ns}-coinpulse-{x}" for x in (
            "silver-trades", "silver-tickers", "silver-posts", "silver-comments", "gold-candles", "gold-mentions")}
        assert h["revision"] == db.head_revision() == "0002" and h["bronze"]["dead_letters"] == 1
        m = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert f'coinpulse_sink_connector_running{{connector="{ns.ns}-coinpulse-silver-trades"}} 1.0' in m
        assert f'coinpulse_sink_bronze_records_total{{topic="{ns.ns}.upbit.raw"}} 6.0' in m

        # secrets: the rows above prove the worker resolved the writer's password; Connect's REST API shows only its
        # placeholder, and the password is in none of this namespace's records in Connect's config topic
        name = f"{ns.ns}-coinpulse-silver-trades"
        shown = httpx.get(f"{ns.settings.connect}/connectors/{name}/config", timeout=30).json()
        assert shown["connection.password"] == "${env:COINPULSE_PG_WRITER_PASSWORD}"
        stored = read_messages(ns.settings, "_connect.configs", complete=True,
                               each=lambda m: (m.key() or b"", m.value() or b""))
        ours = [v for k, v in stored if ns.ns.encode() in k]
        assert ours and not any(ns.settings.pg_writer_password.encode() in v for v in ours)
        # a client override the connector files do not need is refused (here: another broker)
        bad = {**shown, "name": f"{ns.ns}-override", "consumer.override.bootstrap.servers": "127.0.0.1:1"}
        r = httpx.put(f"{ns.settings.connect}/connectors/{ns.ns}-override/config", json=bad, timeout=60)
        assert r.status_code == 400 and "bootstrap.servers" in r.text, r.text
    finally:
        svc.shutdown()


def test_added_optional_field_flows_through_without_manual_ddl(namespace):
    ns = namespace
    topic = ns.topic("upbit.trade")
    v2 = json.loads(schema_text("trade"))
    v2["fields"].append({"name": "venue_note", "type": ["null", "string"], "default": None, "doc": "test field"})
    reg = SchemaRegistryClient({"url": ns.settings.registry})
    reg.register_schema(f"{topic}-value", Schema(json.dumps(v2), "AVRO"))
    ser = AvroSerializer(reg, json.dumps(v2), conf={"auto.register.schemas": False, "use.latest.version": True,
                                                   "subject.name.strategy": topic_subject_name_strategy})
    ctx = SerializationContext(topic, MessageField.VALUE)
    ns.send("upbit.trade", "KRW-BTC", trade(0))  # old writer schema still works
    ns.producer.produce(topic, key=b"KRW-BTC", value=ser({**trade(1), "venue_note": "hello"}, ctx))
    ns.flush()
    svc = _service(ns, sink_bronze=False, sink_connectors="silver-trades")
    try:
        got = wait_for(lambda: _try(ns, "SELECT sequential_id, venue_note FROM {silver}.trades ORDER BY 1"), 120,
                       lambda: f"new column; {json.dumps(svc.health())[:1500]}")
        assert got == [(10_000, None), (10_001, "hello")]
    finally:
        svc.shutdown()


def test_records_of_aborted_transactions_never_reach_postgres(namespace, stack):
    """crawl-dc writes a crawl cycle per transaction; a cycle aborted by a crash must leave no rows."""
    ns = namespace
    t0 = now_ms()
    tx = Producer({"bootstrap.servers": stack.bootstrap, "transactional.id": f"it-abort-{ns.ns}"})
    tx.init_transactions(30)
    for no, commit in ((1, False), (2, True)):
        tx.begin_transaction()
        tx.produce(ns.topic("dc.post"), key=f"bitcoins_new1/{no}".encode(),
                   value=ns.codec("dc.post").encode(_post(no, f"post {no}", t0)))
        assert tx.flush(30) == 0  # in the log before the abort (librdkafka would otherwise just purge them)
        tx.commit_transaction(30) if commit else tx.abort_transaction(30)
    svc = _service(ns, sink_bronze=False, sink_connectors="silver-posts")
    try:
        got = wait_for(lambda: ns.rows("SELECT post_no FROM {silver}.posts ORDER BY 1") or None, 120,
                       lambda: f"committed post; {json.dumps(svc.health())[:1500]}")
        # the aborted post precedes the committed one in the log: read uncommitted, it would have landed first
        assert got == [(2,)]
    finally:
        svc.shutdown()


def _try(ns, sql):
    try:
        rows = ns.rows(sql)
        return rows if len(rows) == 2 else None
    except psycopg.errors.UndefinedColumn:
        return None


def test_writer_writes_only_its_tables_and_reader_only_reads(namespace):
    s = namespace.settings
    sil, brz = f'"{namespace.ns}_silver"', f'"{namespace.ns}_bronze"'
    with psycopg.connect(s.pg_dsn("coinpulse_writer", s.pg_writer_password), autocommit=True) as w:
        w.execute(f"INSERT INTO {sil}.trades (market, sequential_id, trade_timestamp, price, volume, ask_bid, "
                  "stream_type, backfilled, received_at) VALUES ('KRW-X', 1, now(), 1, 1, 'BID', 'R', false, now())")
        for stmt in (f"SELECT * FROM {brz}.s3_objects", "CREATE SCHEMA nope", "CREATE TABLE public.nope (a int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                w.execute(stmt)
    with psycopg.connect(s.pg_dsn("coinpulse_reader", s.pg_reader_password), autocommit=True) as r:
        assert r.execute(f"SELECT count(*) FROM {sil}.trades").fetchone() == (1,)
        assert r.execute(f'SELECT count(*) FROM "{namespace.ns}_gold".candles').fetchone() == (0,)
        for stmt in (f"DELETE FROM {sil}.trades", f"SELECT * FROM {brz}.s3_objects",
                     f"INSERT INTO {sil}.tickers (market) VALUES ('x')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(stmt)


def test_rows_in_the_default_partition_get_their_own_partition(namespace):
    from coinpulse_sink.db import maintain_partitions
    from coinpulse_sink.naming import Names

    s = SinkSettings(sink_namespace=namespace.ns)
    sil = f'"{namespace.ns}_silver"'
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"INSERT INTO {sil}.trades (market, sequential_id, trade_timestamp, price, volume, ask_bid, "
                  "stream_type, backfilled, received_at) VALUES ('KRW-X', 1, '2023-11-14 22:13:20Z', 1, 1, 'BID', "
                  "'R', false, now())")
    first = maintain_partitions(s, Names(namespace.ns))
    assert first.default_rows[f"{namespace.ns}_silver.trades"] == 0
    assert namespace.rows("SELECT tableoid::regclass::text FROM {silver}.trades") == [
        (f"{namespace.ns}_silver.trades_p20231114",)]
    assert maintain_partitions(s, Names(namespace.ns)).created == 0  # idempotent
