"""The platform against the running native stack: Avro through Kafka to Faust, JDBC upserts, S3, Prefect, schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from coinpulse_common.avro import TopicCodec, schema_text
from coinpulse_common.kafka import producer
from coinpulse_common.s3 import client as s3_client
from coinpulse_common.settings import PREFECT_AUTH_SECRET, local_secret_path
from coinpulse_testing.procs import spawn_python, stop
from coinpulse_testing.wait import wait_for
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent


def _topic_with_schema(s, name: str, stem: str, partitions: int = 1) -> None:
    a = AdminClient({"bootstrap.servers": s.bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result()
    SchemaRegistryClient({"url": s.registry}).register_schema(f"{name}-value", Schema(schema_text(stem), "AVRO"))


def _trade(i: int, price: float = 100.0) -> dict:
    return {"market": "KRW-BTC", "sequential_id": 1_000 + i, "trade_timestamp": 1_700_000_000_000 + i,
            "price": price, "volume": 0.5 + i, "ask_bid": "BID", "prev_closing_price": None, "change": None,
            "change_price": None, "stream_type": "REALTIME", "backfilled": False,
            "received_at": 1_700_000_000_100 + i}


def test_avro_roundtrip_confluent_producer_to_faust_consumer(stack, unique, tmp_path):
    """confluent-kafka producer + registry serializer -> Kafka 4.3 -> faust-streaming (aiokafka) decoding it."""
    topic = f"test.rt.{unique}"
    _topic_with_schema(stack, topic, "trade")
    codec = TopicCodec(topic, stack, schema_topic="upbit.trade")
    p = producer(stack)
    sent = [_trade(i) for i in range(5)]
    for rec in sent:
        p.produce(topic, key=rec["market"].encode(), value=codec.encode(rec))
    assert p.flush(15) == 0

    out = tmp_path / "decoded.jsonl"
    env = {**os.environ, "RT_TOPIC": topic, "RT_OUT": str(out), "RT_APP_ID": f"rt-{unique}",
           "RT_BOOTSTRAP": stack.bootstrap, "PYTHONUNBUFFERED": "1"}
    proc = spawn_python([str(HERE / "faust_roundtrip_app.py"), "worker", "--without-web", "-l", "info"],
                        tmp_path / "faust.log", env, cwd=tmp_path)
    try:
        wait_for(lambda: out.is_file() and len(out.read_text().splitlines()) >= len(sent), 90,
                 lambda: f"faust to decode; faust log tail:\n{(tmp_path / 'faust.log').read_text()[-3000:]}", 0.2)
    finally:
        stop(proc, 20)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got == sent


def test_jdbc_sink_upserts_avro_records_into_postgres(stack, unique):
    """Debezium JDBC sink + Apicurio converter: the same key twice gives one row holding the latest value."""
    topic = f"test_jdbc_{unique}"
    table = f"it_jdbc_{unique}"
    _topic_with_schema(stack, topic, "trade")
    name = f"it-jdbc-{unique}"
    cfg = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": f"jdbc:postgresql://{stack.host}:{stack.postgres_port}/{stack.pg_database}",
        "connection.username": "coinpulse",
        "connection.password": stack.pg_superuser_password,
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        # the record key is a plain string (market); wrap it in a struct so it can be the primary key
        "transforms": "key",
        "transforms.key.type": "org.apache.kafka.connect.transforms.HoistField$Key",
        "transforms.key.field": "record_key",
        "primary.key.fields": "record_key",
        "schema.evolution": "basic",
        "collection.name.format": table,
    }
    r = httpx.put(f"{stack.connect}/connectors/{name}/config", json=cfg, timeout=30)
    assert r.status_code in (200, 201), r.text
    try:
        codec = TopicCodec(topic, stack, schema_topic="upbit.trade")
        p = producer(stack)
        p.produce(topic, key=b"KRW-BTC", value=codec.encode(_trade(1, price=100.0)))
        p.produce(topic, key=b"KRW-BTC", value=codec.encode(_trade(2, price=200.0)))
        p.produce(topic, key=b"KRW-ETH", value=codec.encode({**_trade(3, price=7.0), "market": "KRW-ETH"}))
        assert p.flush(15) == 0

        def rows():
            try:
                with psycopg.connect(stack.pg_dsn()) as c:
                    return c.execute(f'SELECT record_key, market, price, sequential_id FROM "{table}" '
                                     'ORDER BY record_key').fetchall()
            except psycopg.errors.UndefinedTable:
                return None

        got = wait_for(lambda: (r := rows()) and len(r) == 2 and r[0][2] == 200.0 and r, 120,
                       lambda: f"2 upserted rows in {table}; connector status: "
                               f"{httpx.get(f'{stack.connect}/connectors/{name}/status').text}")
        assert got == [("KRW-BTC", "KRW-BTC", 200.0, 1002), ("KRW-ETH", "KRW-ETH", 7.0, 1003)]
    finally:
        httpx.delete(f"{stack.connect}/connectors/{name}", timeout=30)


def test_connect_has_both_plugins(stack):
    plugins = httpx.get(f"{stack.connect}/connector-plugins?connectorsOnly=false", timeout=30).json()
    classes = {p["class"] for p in plugins}
    assert "io.debezium.connector.jdbc.JdbcSinkConnector" in classes
    assert "io.apicurio.registry.utils.converter.AvroConverter" in classes


def test_s3_put_list_get(stack, unique):
    c = s3_client(stack)
    key = f"it/{unique}/hello.json"
    c.put_object(Bucket=stack.s3_bucket, Key=key, Body=b'{"hello": "coinpulse"}')
    listed = [o["Key"] for o in c.list_objects_v2(Bucket=stack.s3_bucket, Prefix=f"it/{unique}/")["Contents"]]
    assert listed == [key]
    assert c.get_object(Bucket=stack.s3_bucket, Key=key)["Body"].read() == b'{"hello": "coinpulse"}'
    c.delete_object(Bucket=stack.s3_bucket, Key=key)


def test_prefect_ui_and_api_answer(stack):
    ui = httpx.get(f"http://{stack.host}:{stack.prefect_port}/", timeout=10, follow_redirects=True)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    assert httpx.get(f"{stack.prefect_api}/health", timeout=10).status_code == 200  # open, for probes


def test_prefect_api_requires_the_stacks_auth_string(stack):
    """Whoever reaches the API could start any flow run: it takes only the auth string the stack made (mode 0600)."""
    url = f"{stack.prefect_api}/flow_runs/filter"
    assert httpx.post(url, json={"limit": 1}, timeout=10).status_code == 401
    assert httpx.post(url, json={"limit": 1}, timeout=10, auth=("coinpulse", "guess")).status_code == 401
    assert httpx.post(url, json={"limit": 1}, timeout=10, headers=stack.prefect_headers()).status_code == 200
    secret = local_secret_path(PREFECT_AUTH_SECRET)
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text().strip() == stack.prefect_auth()


def test_registry_enforces_backward_compatibility(stack, unique):
    client = SchemaRegistryClient({"url": stack.registry})
    assert httpx.get(f"{stack.registry}/config", timeout=10).json()["compatibilityLevel"] == "BACKWARD"
    subject = f"test.compat.{unique}-value"
    v1 = {"type": "record", "name": "T", "namespace": "it", "fields": [{"name": "a", "type": "string"}]}
    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))
    # adding a field with a default is backward compatible
    v2 = {**v1, "fields": v1["fields"] + [{"name": "b", "type": ["null", "long"], "default": None}]}
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO"))
    client.register_schema(subject, Schema(json.dumps(v2), "AVRO"))
    # a new field without a default is not: the registry refuses it
    bad = {**v2, "fields": v2["fields"] + [{"name": "c", "type": "long"}]}
    assert not client.test_compatibility(subject, Schema(json.dumps(bad), "AVRO"))
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, Schema(json.dumps(bad), "AVRO"))
    assert client.get_latest_version(subject).version == 2


def test_registry_refuses_deletes_through_its_own_api(stack, unique):
    """A deleted subject or version turns every record in flight under its ids into dead letters: Apicurio's own API
    takes no delete of an artifact, a version or a group. (Its Confluent-compatible API has no such switch in 3.3.3
    and still deletes: the README says so, and the registry listens on 127.0.0.1 only.)"""
    client = SchemaRegistryClient({"url": stack.registry})
    subject = f"test.nodelete.{unique}-value"
    v1 = {"type": "record", "name": "T", "namespace": "it", "fields": [{"name": "a", "type": "string"}]}
    schema_id = client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))
    for url in (f"{stack.registry_native}/groups/default/artifacts/{subject}",
                f"{stack.registry_native}/groups/default/artifacts/{subject}/versions/1",
                f"{stack.registry_native}/groups/default"):
        r = httpx.delete(url, timeout=10)
        assert r.status_code == 405 and "not enabled" in r.text, (url, r.status_code, r.text[:300])
    assert client.get_latest_version(subject).version == 1
    assert json.loads(client.get_schema(schema_id).schema_str)["name"] == "T"


def test_schemas_check_cli_reports_the_tree_as_registered(stack):
    r = subprocess.run([sys.executable, "-m", "coinpulse_platform.cli", "schemas", "check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines and all(line.split()[0] in ("unchanged", "compatible") for line in lines), r.stdout


def test_topics_cli_lists_describes_and_tails(stack, unique):
    topic = f"test.tail.{unique}"
    _topic_with_schema(stack, topic, "trade")
    codec = TopicCodec(topic, stack, schema_topic="upbit.trade")
    p = producer(stack)
    for i in range(3):
        p.produce(topic, key=b"KRW-BTC", value=codec.encode(_trade(i)))
    assert p.flush(15) == 0
    cli = [sys.executable, "-m", "coinpulse_platform.cli", "topics"]
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=60).stdout
    line = next(x for x in listed.splitlines() if x.split()[0] == "candle.1m")
    assert "cleanup=compact" in line and "gold" in line
    assert any(x.split()[0] == topic and "messages=3" in x for x in listed.splitlines())
    desc = subprocess.run([*cli, "describe", topic], capture_output=True, text=True, timeout=60).stdout
    assert "high=3" in desc
    out = subprocess.run([*cli, "tail", topic, "--from-beginning", "--max", "3", "--json"], capture_output=True,
                         text=True, timeout=60)
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["value"]["sequential_id"] for r in recs] == [1000, 1001, 1002]
    assert recs[0]["key"] == "KRW-BTC" and recs[0]["value"]["price"] == 100.0
