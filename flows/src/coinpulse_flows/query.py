"""One query over every tier: each entity is one DuckDB view over PostgreSQL, the S3 Parquet tier and the archive.

DuckDB's `postgres_scanner` and `httpfs` extensions are installed from PyPI wheels (`duckdb-extension-*`, pinned
with `duckdb` itself, since an extension binary only loads into the DuckDB version it was built for); the machine
reaches no other extension repository. `postgres_scanner` reads PostgreSQL with binary COPY and pushes filters
down, `httpfs` reads Parquet from S3 with range requests, so nothing is copied up front.

A view `<schema>.<table>` is `pg.<schema>.<table> UNION ALL BY NAME <S3 files> UNION ALL BY NAME <local files>`.
The Parquet files are listed explicitly, and each copy is read once, so the short moment in which a part exists in
two tiers (copied, not yet deleted) is never counted twice:

- a day is one or more parts (`layout`): the rows first tiered, then each later partition of late rows. Every
  part is read, from the local archive when it is there (same path, same size, or the archive's
  `part-<n>.<sha256[:12]>` name for that object), else from S3;
- while the day also has a partition in PostgreSQL, a part copied from that very partition (its source oid is the
  partition's: tiered, not yet dropped) is skipped, since PostgreSQL has those rows; parts of earlier partitions
  are read beside it. Parts written before oids were recorded are skipped then too, as before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import duckdb_extensions
import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from coinpulse_flows import layout
from coinpulse_flows.partitions import discover
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(s: FlowSettings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for ext in ("postgres_scanner", "httpfs"):
        duckdb_extensions.import_extension(ext, con=con)
        con.execute(f"LOAD {ext}")
    endpoint = s.s3.split("://", 1)[-1].rstrip("/")
    con.execute(
        f"CREATE SECRET coinpulse_s3 (TYPE s3, KEY_ID {_lit(s.s3_access_key)}, SECRET {_lit(s.s3_secret_key)}, "
        f"ENDPOINT {_lit(endpoint)}, USE_SSL {str(s.s3.startswith('https')).lower()}, URL_STYLE 'path', "
        f"REGION {_lit(s.s3_region)})")
    dsn = (f"host={s.host} port={s.postgres_port} dbname={s.pg_database} user=coinpulse_reader "
           f"password={s.pg_reader_password}")
    con.execute(f"ATTACH {_lit(dsn)} AS pg (TYPE postgres, READ_ONLY)")
    return con


@dataclass(frozen=True)
class TierFile:
    url: str  # s3://bucket/key or a local path
    tier: str  # s3 | local
    key: str  # the S3 key / the path relative to the archive folder


def _s3_sha(store: Store, key: str) -> str:
    m = store.manifest(key)
    return m.sha256 if m is not None else ""


def tier_files(s: FlowSettings, store: Store) -> dict[str, dict[date, list[TierFile]]]:
    """entity → day → the day's parts, each once: from the archive when it holds the object, else from S3."""
    s3_days: dict[str, dict[date, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for o in store.list(s.tier_prefix):
        table, day = layout.table_of_key(o.key, s.tier_prefix), layout.day_of_key(o.key)
        if table and day and o.key.endswith(".parquet"):
            s3_days[table][day][o.key] = o.size
    local: dict[str, dict[date, dict[str, Path]]] = defaultdict(lambda: defaultdict(dict))
    root = s.archive_dir / s.tier_prefix if s.tier_prefix else s.archive_dir
    if root.is_dir():
        for f in root.glob("*/date=*/part-*.parquet"):
            day = layout.day_of_key(str(f.relative_to(root)))
            if day is not None:
                local[f.parent.parent.name][day][s.tier_prefix + str(f.relative_to(root))] = f
    out: dict[str, dict[date, list[TierFile]]] = defaultdict(dict)
    for table in set(s3_days) | set(local):
        for day in set(s3_days.get(table, {})) | set(local.get(table, {})):
            here = local.get(table, {}).get(day, {})
            files = [TierFile(str(f), "local", k) for k, f in sorted(here.items())]
            for key, size in sorted(s3_days.get(table, {}).get(day, {}).items()):
                same = here.get(key)
                if same is not None and same.stat().st_size == size:
                    continue  # archived, not yet deleted from S3
                stem = key.rsplit("/", 1)[-1].removesuffix(".parquet")
                if any(k.rsplit("/", 1)[-1].startswith(stem + ".") for k in here):
                    sha = _s3_sha(store, key)[:12]
                    if sha and key.removesuffix(".parquet") + f".{sha}.parquet" in here:
                        continue  # archived under its alternate name
                files.append(TierFile(f"s3://{s.s3_bucket}/{key}", "s3", key))
            out[table][day] = files
    return out


def _source_oid(store: Store, f: TierFile) -> int | None:
    if f.tier == "s3":
        m = store.manifest(f.key)
        return layout.source_oid(m.source) if m is not None else None
    meta = pq.read_metadata(f.url).metadata or {}
    return layout.source_oid(meta.get(b"coinpulse.source", b"").decode())


def build_views(s: FlowSettings, con: duckdb.DuckDBPyConnection, store: Store | None = None) -> dict[str, str]:
    """Create one view per entity; returns entity → SQL of its view."""
    store = store or Store(s)
    files = tier_files(s, store)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        parts = discover(conn, s.tier_schemas)
        partitioned = {r[0] for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'p' AND n.nspname = ANY(%s) AND NOT c.relispartition", (s.tier_schemas,))}
        in_pg: dict[str, dict[date, int]] = defaultdict(dict)
        for p in parts:
            if p.day in files.get(p.table, {}):  # only days in two tiers need the partition's oid
                in_pg[p.table][p.day] = conn.execute(
                    "SELECT %s::regclass::oid", (sql.Identifier(p.schema, p.name).as_string(conn),)).fetchone()[0]
            else:
                in_pg[p.table][p.day] = 0
    views = {}
    for entity in sorted(partitioned | set(files)):
        schema, _, table = entity.partition(".")
        selects = []
        if entity in partitioned:
            selects.append(f"SELECT * FROM pg.{_q(schema)}.{_q(table)}")
        parquet = []
        for day, fs in files.get(entity, {}).items():
            pg_oid = in_pg[entity].get(day)
            for f in fs:
                if pg_oid is not None:
                    oid = _source_oid(store, f)
                    if oid is None or oid == pg_oid:
                        continue  # a copy of the partition PostgreSQL still has
                parquet.append(f.url)
        if parquet:
            selects.append(f"SELECT * FROM read_parquet([{', '.join(_lit(f) for f in sorted(parquet))}])")
        if not selects:
            continue
        body = "\nUNION ALL BY NAME\n".join(selects)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        con.execute(f"CREATE OR REPLACE VIEW {_q(schema)}.{_q(table)} AS {body}")
        views[entity] = body
    return views


def run_query(s: FlowSettings, text: str) -> tuple[list[str], list[tuple]]:
    con = connect(s)
    try:
        build_views(s, con)
        rel = con.sql(text)
        if rel is None:
            return [], []
        return rel.columns, rel.fetchall()
    finally:
        con.close()


def archive_root(s: FlowSettings) -> Path:
    return s.archive_dir
