"""Factories for the flows' integration tests: a unique schema with day-partitioned tables, and cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from coinpulse_common.kafka import admin, producer
from coinpulse_common.settings import env_var
from coinpulse_flows import tiering
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic


def set_flow_settings(monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    """Set flow settings the way a worker gets them, in its environment (flows take no settings parameter)."""
    for field, value in settings.items():
        monkeypatch.setenv(env_var(FlowSettings, field), value if isinstance(value, str) else json.dumps(value))


@pytest.fixture
def flow_settings(monkeypatch) -> object:
    """`flow_settings(field=value, ...)`: flow settings confined to this test (see set_flow_settings)."""
    return lambda **settings: set_flow_settings(monkeypatch, **settings)


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
def flow_env(stack, unique, tmp_path, monkeypatch) -> Iterator[dict]:
    """Settings overrides confined to this test: own schema, own S3 prefix, own archive dir; removed afterwards.
    They are in the environment too, where the flows read them."""
    schema = f"zz_flows_{unique}"
    overrides = {"tier_schemas": [schema], "tier_prefix": f"test-flows-{unique}/",
                 "archive_dir_override": str(tmp_path / "archive"), "backup_prefix": f"test-flows-{unique}/backups/",
                 "marts_schema": f"{schema}_marts", "trades_table": f"{schema}.trades",
                 "candles_table": f"{schema}.candles", "mentions_table": f"{schema}.mentions_1m"}
    s = FlowSettings(**overrides)
    set_flow_settings(monkeypatch, **overrides)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        c.execute(f"GRANT USAGE ON SCHEMA {schema} TO coinpulse_reader")
        c.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO coinpulse_reader")
    yield {"schema": schema, "settings": s, "overrides": overrides}
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.execute(f"DROP SCHEMA IF EXISTS {schema}_marts CASCADE")
    store = Store(s)
    for o in list(store.list(overrides["tier_prefix"])) + list(store.list(overrides["backup_prefix"])):
        store.delete(o.key)


def make_trades(s: FlowSettings, schema: str, ages: tuple[int, ...], rows_per_day: int = 5000) -> None:
    """`<schema>.trades` partitioned by day on trade_timestamp, one partition per age (days before today)."""
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.trades (market text NOT NULL, sequential_id bigint NOT NULL,
            trade_timestamp timestamptz NOT NULL, price float8, volume float8, ask_bid text, note text,
            PRIMARY KEY (market, sequential_id, trade_timestamp)) PARTITION BY RANGE (trade_timestamp)""")
        for age in ages:
            d = today() - timedelta(days=age)
            c.execute(f"CREATE TABLE {schema}.trades_{d:%Y%m%d} PARTITION OF {schema}.trades "
                      f"FOR VALUES FROM ('{d} 00:00:00+00') TO ('{d + timedelta(days=1)} 00:00:00+00')")
            c.execute(f"""INSERT INTO {schema}.trades SELECT 'KRW-' || (g % 7), g + {age} * 1000000,
                '{d} 00:00:00+00'::timestamptz + g * interval '17 s', 100 + g % 13, (g % 5) * 0.25,
                CASE WHEN g % 2 = 0 THEN 'BID' ELSE 'ASK' END, CASE WHEN g % 9 = 0 THEN NULL ELSE 'n' || g END
                FROM generate_series(1, {rows_per_day}) g""")


def partitions_of(s: FlowSettings, schema: str) -> set[str]:
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        return {r[0] for r in c.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", (schema,)).fetchall()}


@pytest.fixture
def helpers():
    """make_trades / partitions_of / today / archive_crashing_after_first_copy, for tests (importlib mode cannot
    import conftest)."""
    return type("Helpers", (), {"make_trades": staticmethod(make_trades), "partitions_of": staticmethod(partitions_of),
                                "today": staticmethod(today),
                                "archive_crashing_after_first_copy": staticmethod(archive_crashing_after_first_copy)})


@pytest.fixture
def expired_topic(stack, unique):
    """`t<unique>.retention` with 20 records of which the first 12 have expired (log start offset 12)."""
    topic = f"t{unique}.retention"
    a = admin(stack)
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = producer(stack)
    for i in range(20):
        p.produce(topic, key=b"k", value=str(i).encode())
    assert p.flush(30) == 0
    [fut] = a.delete_records([TopicPartition(topic, 0, 12)]).values()
    assert fut.result(30).low_watermark == 12  # the new log start offset
    yield topic
    a.delete_topics([topic])


def archive_crashing_after_first_copy(overrides: dict, day: date) -> subprocess.CompletedProcess:
    """Archive what is due on `day` in a child process that dies (exit 97) right after its first archive copy,
    before that object's delete from S3: the crash the archive step must survive."""
    code = ("import json, sys, datetime; from coinpulse_flows.settings import FlowSettings; "
            "from coinpulse_flows import tiering; from coinpulse_flows.storage import Store; "
            "s = FlowSettings(**json.loads(sys.argv[1])); d = datetime.date.fromisoformat(sys.argv[2]);"
            "[tiering.archive_object(s, Store(s), k) for k in tiering.archive_due(s, Store(s), d)]")
    return subprocess.run([sys.executable, "-c", code, json.dumps(overrides), day.isoformat()],
                          env={**os.environ, tiering.CRASH_ENV: "after_archive_copy"}, timeout=120, check=False)
