"""Idempotent bootstrap of a running stack: database roles, S3 bucket, registry compatibility, schemas, topics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from coinpulse_common.avro import REGISTRY_TIMEOUT_S, schema_text
from coinpulse_common.logging import get_logger
from coinpulse_common.paths import state_dir
from coinpulse_common.proc import exclusive
from coinpulse_common.settings import Settings
from coinpulse_common.topics import TOPICS, TopicSpec
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from psycopg import sql

COMPATIBILITY = "BACKWARD"


def postgres(s: Settings, socket_dir: Path | None) -> None:
    """Roles (owner, connector writer, read-only reader, registry) and databases, passwords from the environment."""
    roles = {
        "coinpulse": (s.pg_superuser_password, "LOGIN CREATEROLE"),
        "coinpulse_writer": (s.pg_writer_password, "LOGIN"),
        "coinpulse_reader": (s.pg_reader_password, "LOGIN"),
        "apicurio": (s.pg_registry_password, "LOGIN"),
    }
    if socket_dir is not None:  # native stack: the cluster's OS owner over the private socket
        conn = psycopg.connect(host=str(socket_dir), port=s.postgres_port, user="postgres", dbname="postgres",
                               autocommit=True)
    else:  # containers: the image's `postgres` superuser over TCP
        conn = psycopg.connect(host=s.pg_host or s.host, port=s.postgres_port, user="postgres", dbname="postgres",
                               password=s.pg_superuser_password, autocommit=True)
    with conn:
        for role, (pw, attrs) in roles.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(role), sql.SQL(attrs), sql.Literal(pw)))
        for db, owner in ((s.pg_database, "coinpulse"), ("apicurio", "apicurio")):
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(owner)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO coinpulse_writer, coinpulse_reader").format(
            sql.Identifier(s.pg_database)))


def s3_bucket(s: Settings) -> None:
    from coinpulse_common.s3 import client

    c = client(s)
    names = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
    if s.s3_bucket not in names:
        c.create_bucket(Bucket=s.s3_bucket)


def registry_config(s: Settings) -> None:
    r = httpx.put(f"{s.registry}/config", json={"compatibility": COMPATIBILITY}, timeout=10)
    r.raise_for_status()


def registry(s: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": s.registry, "timeout": REGISTRY_TIMEOUT_S})


@dataclass
class SchemaCheck:
    subject: str
    file: str
    state: str  # registered | unchanged | compatible | incompatible | new
    detail: str = ""


def register_schemas(s: Settings, topics: tuple[TopicSpec, ...] = TOPICS) -> list[SchemaCheck]:
    """Register every topic's schema under `<topic>-value`; the registry refuses incompatible changes."""
    client = registry(s)
    out = []
    for spec in topics:
        text = schema_text(spec.schema)
        try:
            before = client.get_latest_version(spec.subject).version
        except SchemaRegistryError:
            before = None
        try:
            client.register_schema(spec.subject, Schema(text, "AVRO"))
        except SchemaRegistryError as e:
            raise RuntimeError(
                f"schema {spec.schema}.avsc is not {COMPATIBILITY}-compatible with {spec.subject} in the registry: "
                f"{e}. Make the change compatible (add fields with defaults) or use a new topic."
            ) from e
        after = client.get_latest_version(spec.subject).version
        out.append(SchemaCheck(spec.subject, f"{spec.schema}.avsc", "unchanged" if before == after else "registered"))
    return out


def check_schemas(s: Settings, topics: tuple[TopicSpec, ...] = TOPICS) -> list[SchemaCheck]:
    """Compare the working tree's schemas with the registry without changing anything."""
    client = registry(s)
    out = []
    for spec in topics:
        text = schema_text(spec.schema)
        file = f"{spec.schema}.avsc"
        try:
            latest = client.get_latest_version(spec.subject)
        except SchemaRegistryError:
            out.append(SchemaCheck(spec.subject, file, "new", "not registered yet"))
            continue
        if json.loads(latest.schema.schema_str) == json.loads(_canonical(text)):
            out.append(SchemaCheck(spec.subject, file, "unchanged", f"version {latest.version}"))
            continue
        try:
            lookup = client.lookup_schema(spec.subject, Schema(text, "AVRO"))
            out.append(SchemaCheck(spec.subject, file, "unchanged", f"version {lookup.version}"))
            continue
        except SchemaRegistryError:
            pass
        ok = client.test_compatibility(spec.subject, Schema(text, "AVRO"))
        out.append(SchemaCheck(spec.subject, file, "compatible" if ok else "incompatible",
                               f"against version {latest.version}"))
    return out


def _canonical(text: str) -> str:
    return json.dumps(json.loads(text))


def topics(s: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing topics; bring partitions (up only) and configs of existing ones to the declaration."""
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    md = admin.list_topics(timeout=10)
    created = []
    new = [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, config=t.config())
           for t in specs if t.name not in md.topics]
    if new:
        for name, fut in admin.create_topics(new, request_timeout=15).items():
            try:
                fut.result()
                created.append(name)
            except Exception as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
    grow = [NewPartitions(t.name, t.partitions) for t in specs
            if t.name in md.topics and len(md.topics[t.name].partitions) < t.partitions]
    if grow:
        for fut in admin.create_partitions(grow).values():
            fut.result()
    resources = []
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    for t in specs:
        if t.name in md.topics:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.config().items()]
            resources.append(ConfigResource(ConfigResource.Type.TOPIC, t.name, incremental_configs=entries))
    if resources:
        for fut in admin.incremental_alter_configs(resources).values():
            fut.result()
    return created


def all_(s: Settings) -> dict:
    """Topics and schemas, one bootstrap at a time per state folder (two at once made the registry answer 409)."""
    def say(message: str) -> None:
        get_logger("coinpulse.bootstrap").info("bootstrap_waiting", message=message)

    with exclusive(state_dir() / "bootstrap.lock", say,
                   "another process is bootstrapping topics and schemas; waiting for it"):
        created = topics(s)
        schemas = register_schemas(s)
    return {"topics_created": created, "schemas": [c.__dict__ for c in schemas]}


def connectors(s: Settings) -> None:
    """Migrate the database and apply connect/*.json through the sink service, when it is installed."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("coinpulse_sink") is None:
        return
    subprocess.run([sys.executable, "-m", "coinpulse_sink", "migrate"], check=True)
    subprocess.run([sys.executable, "-m", "coinpulse_sink", "apply"], check=True)
