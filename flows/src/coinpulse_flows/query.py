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

Each key is returned once, with its newest values. A replay or backfill may re-emit a row whose key was already
tiered (a candle of the same market, interval and bucket_start with corrected values): the sink upserts it into
the day's re-created partition, which is tiered later as a higher part. Over an entity read from more than one
source the view keeps, per primary key, the row of the newest source: PostgreSQL above every part, then the higher
part (`layout.part_rank`: its number, the archive's `part-<n>.<sha>` just above `part-<n>`), the same rule in S3
and in the archive. The key is the parent table's primary key as the PostgreSQL catalog declares it (the sink's
model creates it), so it is declared once; every primary key holds the partition column, so a key lives in one day.
Only an entity in which a key can repeat pays for this step (a hash aggregate over the key: 2 M rows took 5.3 s
instead of 0.24 s on a busy 2-core machine): one with a day in two sources (a PostgreSQL partition and a part, or
two parts), or with rows in a partition that is not one day (DEFAULT: rows of any day). Elsewhere each key is in
one source, which holds it once (PostgreSQL enforces it; a part is a copy of one partition), and the view is the
plain union. An entity with no primary key in PostgreSQL (its table dropped, or none declared) is read without
this step, and a warning names it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import duckdb_extensions
import psycopg
import pyarrow.parquet as pq
from coinpulse_common.logging import get_logger
from coinpulse_common.settings import READER_ROLE
from psycopg import sql

from coinpulse_flows import layout
from coinpulse_flows.partitions import discover, others
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store

log = get_logger("coinpulse.flows.query")

RANK = "__coinpulse_rank"  # the source rank column of a deduplicated view, never returned
PG_RANK = 1 << 62  # PostgreSQL's rows are newer than every part

_PRIMARY_KEYS = """
SELECT n.nspname || '.' || c.relname, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND c.relkind = 'p' AND NOT c.relispartition AND n.nspname = ANY(%s)
GROUP BY 1
"""

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
    dsn = (f"host={s.pg_host or s.host} port={s.postgres_port} dbname={s.pg_database} user={READER_ROLE} "
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


def file_rank(f: TierFile, day_files: list[TierFile]) -> int:
    """`layout.part_rank` of a part; an S3 object at the path of an archive file with other rows (both are read)
    ranks as the `part-<n>.<sha>` name it will be archived under: above that file."""
    rank = layout.part_rank(f.key)
    if f.tier == "s3" and any(g.tier == "local" and g.key == f.key for g in day_files):
        rank |= 1
    return rank


def view_sql(sources: list[tuple[str, int]], key: tuple[str, ...] | None) -> str:
    """One entity's view over its sources, each a SELECT with its rank (PostgreSQL `PG_RANK`, a part its
    `layout.part_rank`). With a primary key and more than one source, each key once: the row of the highest rank
    (within one source a key is unique: PostgreSQL enforces it, a part is a copy of one partition). Without a key,
    or from a single source, every row as it is."""
    if key is None or len(sources) < 2:
        return "\nUNION ALL BY NAME\n".join(sql_ for sql_, _ in sources)
    ranked = "\nUNION ALL BY NAME\n".join(f"SELECT *, {int(r)}::BIGINT AS {RANK} FROM ({sql_})" for sql_, r in sources)
    return (f"SELECT * EXCLUDE ({RANK}) FROM (\n{ranked}\n)\n"
            f"QUALIFY row_number() OVER (PARTITION BY {', '.join(_q(c) for c in key)} ORDER BY {RANK} DESC) = 1")


def build_views(s: FlowSettings, con: duckdb.DuckDBPyConnection, store: Store | None = None) -> dict[str, str]:
    """Create one view per entity; returns entity → SQL of its view."""
    store = store or Store(s)
    files = tier_files(s, store)
    # read-only, as the views' own connection below: `coinpulse query` never needs more than the reader role
    with psycopg.connect(s.pg_dsn(READER_ROLE, s.pg_reader_password), autocommit=True) as conn:
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
        keys = {e: tuple(k) for e, k in conn.execute(_PRIMARY_KEYS, (s.tier_schemas,)).fetchall()}
        any_day: set[str] = set()  # entities with rows in a partition that is not one day
        for entity, schema, name in others(conn, s.tier_schemas):
            if entity in files and conn.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {})").format(sql.Identifier(schema, name))).fetchone()[0]:
                any_day.add(entity)
    views = {}
    for entity in sorted(partitioned | set(files)):
        schema, _, table = entity.partition(".")
        sources: list[tuple[str, int]] = []
        if entity in partitioned:
            sources.append((f"SELECT * FROM pg.{_q(schema)}.{_q(table)}", PG_RANK))
        by_rank: dict[int, list[str]] = defaultdict(list)
        per_day = Counter(in_pg[entity].keys())  # sources per day: the day's partition, then each part read
        for day, fs in files.get(entity, {}).items():
            pg_oid = in_pg[entity].get(day)
            for f in fs:
                if pg_oid is not None:
                    oid = _source_oid(store, f)
                    if oid is None or oid == pg_oid:
                        continue  # a copy of the partition PostgreSQL still has
                by_rank[file_rank(f, fs)].append(f.url)
                per_day[day] += 1
        for rank, urls in sorted(by_rank.items()):
            sources.append((f"SELECT * FROM read_parquet([{', '.join(_lit(u) for u in sorted(urls))}])", rank))
        if not sources:
            continue
        if not (entity in any_day or any(n > 1 for n in per_day.values())):
            body = view_sql(sources, None)  # every key in one source, once
        else:
            key = keys.get(entity)
            if key is None:
                log.warning("query_view_not_deduplicated", entity=entity,
                            reason="no primary key in PostgreSQL: a key repeated across tiers is returned once per "
                            "tier")
            body = view_sql(sources, key)
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
