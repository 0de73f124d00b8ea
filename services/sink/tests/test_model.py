"""The PostgreSQL model matches the Avro contracts and the connector files."""

from __future__ import annotations

import json

import pytest
from coinpulse_common.avro import schema_text
from coinpulse_common.paths import repo_root
from coinpulse_sink import model

pytestmark = pytest.mark.unit

AVRO_TO_PG = {"string": model.TEXT, "long": model.BIGINT, "int": model.INT, "double": model.DOUBLE,
              "boolean": model.BOOL}


def _pg_type(avro_type) -> tuple[str, bool]:
    nullable = False
    if isinstance(avro_type, list):
        nullable = "null" in avro_type
        (avro_type,) = [t for t in avro_type if t != "null"]
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return model.TS, nullable
        if avro_type["type"] == "array" and avro_type["items"] == "string":
            return model.TEXT_ARRAY, nullable
        avro_type = avro_type["type"]
    return AVRO_TO_PG[avro_type], nullable


@pytest.mark.parametrize("table", model.CONNECTOR_TABLES, ids=lambda t: t.name)
def test_connector_table_columns_are_the_avro_fields_with_debezium_types(table):
    fields = json.loads(schema_text(table.avro))["fields"]
    expected = [(f["name"], *_pg_type(f["type"])) for f in fields]
    assert [(c.name, c.type, c.nullable) for c in table.columns] == expected


@pytest.mark.parametrize("table", [t for t in model.TABLES if t.partition_by], ids=lambda t: t.name)
def test_primary_key_includes_the_partition_column(table):
    assert table.partition_by in table.primary_key
    assert dict((c.name, c.type) for c in table.columns)[table.partition_by] == model.TS


def _connector_files():
    return {p.stem: json.loads(p.read_text()) for p in sorted((repo_root() / "connect").glob("*.json"))}


def test_every_connector_table_has_exactly_one_connector_file_matching_its_key_and_topics():
    by_table = {}
    for doc in _connector_files().values():
        cfg = doc["config"]
        by_table[cfg["collection.name.format"].replace("${coinpulse:schema_prefix}", "")] = cfg
    assert set(by_table) == {f"{t.schema}.{t.name}" for t in model.CONNECTOR_TABLES}
    for t in model.CONNECTOR_TABLES:
        cfg = by_table[f"{t.schema}.{t.name}"]
        assert cfg["primary.key.mode"] == "record_value"
        assert tuple(cfg["primary.key.fields"].split(",")) == t.primary_key
        assert cfg["topics"].split(",") == ["${coinpulse:topic_prefix}" + x for x in t.topics]


@pytest.mark.parametrize("stem", list(_connector_files()))
def test_connector_file_upserts_evolves_dead_letters_and_commits_no_secret(stem):
    cfg = _connector_files()[stem]["config"]
    assert cfg["insert.mode"] == "upsert" and cfg["schema.evolution"] == "basic"
    assert cfg["errors.tolerance"] == "all"
    assert cfg["errors.deadletterqueue.topic.name"] == "${coinpulse:topic_prefix}dlq.connect"
    assert cfg["errors.deadletterqueue.context.headers.enable"] == "true"
    assert cfg["connection.username"] == "coinpulse_writer"
    assert cfg["connection.password"].startswith("${env:")


def test_create_table_sql_partitions_by_day_with_default_partition_and_indexes():
    stmts = model.create_table_sql(model.TRADES, "t_silver")
    assert 'PARTITION BY RANGE ("trade_timestamp")' in stmts[0]
    assert 'PRIMARY KEY ("market", "sequential_id", "trade_timestamp")' in stmts[0]
    assert stmts[1] == 'CREATE TABLE "t_silver"."trades_default" PARTITION OF "t_silver"."trades" DEFAULT'
    assert 'ON "t_silver"."trades" ("market", "trade_timestamp")' in stmts[2]


def test_unpartitioned_ledger_has_no_default_partition():
    stmts = model.create_table_sql(model.S3_OBJECTS, "bronze")
    assert "PARTITION" not in " ".join(stmts)


@pytest.mark.parametrize("stem", list(_connector_files()))
def test_connector_file_reads_confluent_ids_as_content_ids(stem):
    cfg = _connector_files()[stem]["config"]
    assert cfg["value.converter.apicurio.registry.id-handler"] == "io.apicurio.registry.serde.Legacy4ByteIdHandler"
    assert cfg["value.converter.apicurio.registry.use-id"] == "contentId"
    assert "value.converter.apicurio.registry.as-confluent" not in cfg


@pytest.mark.parametrize("stem", list(_connector_files()))
def test_connector_file_keeps_resolved_schemas_through_a_registry_outage(stem):
    # the defaults (refresh every 30 s, failure = exception) turn good records into dead letters while the
    # registry is down; a content id names immutable content, so the cached schema stays right
    cfg = _connector_files()[stem]["config"]
    assert cfg["value.converter.apicurio.registry.fault-tolerant-refresh"] == "true"
    assert int(cfg["value.converter.apicurio.registry.check-period-ms"]) >= 3_600_000
