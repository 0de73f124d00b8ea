"""One query over every tier: each entity is one DuckDB view over PostgreSQL, the S3 Parquet tier and the archive.

DuckDB's `postgres_scanner` and `httpfs` extensions are installed from PyPI wheels (`duckdb-extension-*`, pinned
with `duckdb` itself, since an extension binary only loads into the DuckDB version it was built for); the machine
reaches no other extension repository. `postgres_scanner` reads PostgreSQL with binary COPY and pushes filters
down, `httpfs` reads Parquet from S3 with range requests, so nothing is copied up front.

A view `<schema>.<table>` is `pg.<schema>.<table> UNION ALL BY NAME <S3 files> UNION ALL BY NAME <local files>`.
The Parquet files are listed explicitly, and a day is read from one tier only (PostgreSQL first, then the local
archive, then S3), so the short moment in which a day exists in two tiers (copied, not yet dropped) is never
counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import duckdb
import duckdb_extensions
import psycopg

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


def tier_files(s: FlowSettings, store: Store) -> dict[str, dict[date, tuple[str, list[str]]]]:
    """entity → day → (tier, files); a day comes from the archive when it is there, else from S3."""
    out: dict[str, dict[date, tuple[str, list[str]]]] = defaultdict(dict)
    s3_days: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for o in store.list(s.tier_prefix):
        table, day = layout.table_of_key(o.key, s.tier_prefix), layout.day_of_key(o.key)
        if table and day and o.key.endswith(".parquet"):
            s3_days[table][day].append(f"s3://{s.s3_bucket}/{o.key}")
    for table, days in s3_days.items():
        for day, files in days.items():
            out[table][day] = ("s3", sorted(files))
    root = s.archive_dir / s.tier_prefix if s.tier_prefix else s.archive_dir
    if root.is_dir():
        for f in root.glob("*/date=*/*.parquet"):
            table, day = f.parent.parent.name, layout.day_of_key(str(f.relative_to(root)))
            if day is None:
                continue
            tier, files = out[table].get(day, ("", []))
            out[table][day] = ("local", sorted([*([] if tier == "s3" else files), str(f)]))
    return out


def build_views(s: FlowSettings, con: duckdb.DuckDBPyConnection, store: Store | None = None) -> dict[str, str]:
    """Create one view per entity; returns entity → SQL of its view."""
    store = store or Store(s)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        parts = discover(conn, s.tier_schemas)
        partitioned = {r[0] for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'p' AND n.nspname = ANY(%s) AND NOT c.relispartition", (s.tier_schemas,))}
    in_pg: dict[str, set[date]] = defaultdict(set)
    for p in parts:
        in_pg[p.table].add(p.day)
    files = tier_files(s, store)
    views = {}
    for entity in sorted(partitioned | set(files)):
        schema, _, table = entity.partition(".")
        selects = []
        if entity in partitioned:
            selects.append(f"SELECT * FROM pg.{_q(schema)}.{_q(table)}")
        parquet = sorted(f for day, (_, fs) in files.get(entity, {}).items() if day not in in_pg[entity] for f in fs)
        if parquet:
            selects.append(f"SELECT * FROM read_parquet([{', '.join(_lit(f) for f in parquet)}])")
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
