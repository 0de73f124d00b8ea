"""Database dumps to S3 with retention, and a restore check that proves the newest dump restores.

`pg_dump -Fc` of the whole database streams to a spool file, goes to `<backup_prefix>coinpulse-<UTC stamp>.dump`
with its sha256 as metadata; retention keeps the newest `backup_keep`. The restore check downloads the newest dump,
verifies its sha256, creates a scratch database (the `coinpulse` role cannot CREATEDB, so through the `postgres`
superuser on the local unix socket), runs `pg_restore --exit-on-error`, compares the restored tables with the
dump's table of contents and drops the scratch database again.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from coinpulse_common.logging import get_logger
from psycopg import sql

from coinpulse_flows.digest import sha256_file
from coinpulse_flows.storage import Manifest, Store
from coinpulse_flows.tiering import VerificationError, spool_dir

log = get_logger("coinpulse.flows.backup")


@dataclass
class BackupResult:
    key: str
    bytes: int
    sha256: str
    deleted: list[str]


@dataclass
class RestoreResult:
    key: str
    database: str
    tables_in_dump: int
    tables_restored: int
    rows_restored: int


def _pg_env(s) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": s.pg_superuser_password, "PGCONNECT_TIMEOUT": "10"}


def _run(cmd: list[str], env: dict[str, str]) -> str:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def dump_key(s, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{s.backup_prefix}{s.pg_database}-{now.strftime('%Y%m%dT%H%M%S%fZ')}.dump"


def backups(s, store: Store) -> list[str]:
    """Dump keys, oldest first (the UTC stamp sorts)."""
    return sorted(o.key for o in store.list(s.backup_prefix) if o.key.endswith(".dump"))


def backup_database(s, store: Store) -> BackupResult:
    key = dump_key(s)
    with tempfile.TemporaryDirectory(dir=spool_dir()) as tmp:
        path = Path(tmp) / "db.dump"
        _run([f"{s.pg_bin}/pg_dump", "-Fc", "-Z", "6", "-h", s.host, "-p", str(s.postgres_port), "-U", "coinpulse",
              "-d", s.pg_database, "-f", str(path)], _pg_env(s))
        manifest = Manifest(0, "", sha256_file(path), f"pg_dump {s.pg_database}")
        store.upload(path, key, manifest)
        size = path.stat().st_size
    if store.manifest(key) != manifest:
        raise VerificationError(f"{key}: metadata does not match the uploaded dump")
    deleted = apply_retention(s, store)
    log.info("backup_done", key=key, bytes=size, deleted=len(deleted))
    return BackupResult(key, size, manifest.sha256, deleted)


def apply_retention(s, store: Store) -> list[str]:
    keys = backups(s, store)
    old = keys[: max(0, len(keys) - s.backup_keep)]
    for k in old:
        store.delete(k)
    return old


def _superuser(s) -> psycopg.Connection:
    return psycopg.connect(host=str(s.pg_socket_dir), port=s.postgres_port, user="postgres", dbname="postgres",
                           autocommit=True)


def restore_check(s, store: Store, key: str | None = None) -> RestoreResult:
    keys = backups(s, store)
    if key is None:
        if not keys:
            raise RuntimeError(f"no dump under s3://{s.s3_bucket}/{s.backup_prefix} to check")
        key = keys[-1]
    manifest = store.manifest(key)
    scratch = f"coinpulse_restore_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(dir=spool_dir()) as tmp:
        path = Path(tmp) / "db.dump"
        store.download(key, path)
        if manifest is None or sha256_file(path) != manifest.sha256:
            raise VerificationError(f"{key}: downloaded dump does not match its sha256")
        toc = _run([f"{s.pg_bin}/pg_restore", "-l", str(path)], _pg_env(s))
        in_dump = sum(1 for line in toc.splitlines() if " TABLE DATA " in line and not line.startswith(";"))
        with _superuser(s) as su:
            su.execute(sql.SQL("CREATE DATABASE {} OWNER coinpulse").format(sql.Identifier(scratch)))
        try:
            _run([f"{s.pg_bin}/pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "-h",
                  str(s.pg_socket_dir), "-p", str(s.postgres_port), "-U", "postgres", "-d", scratch, str(path)],
                 _pg_env(s))
            with psycopg.connect(host=str(s.pg_socket_dir), port=s.postgres_port, user="postgres",
                                 dbname=scratch, autocommit=True) as conn:
                tables = conn.execute(
                    "SELECT count(*), coalesce(sum(c.reltuples::bigint) FILTER (WHERE c.reltuples > 0), 0) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%'").fetchone()
                conn.execute("ANALYZE")
                rows = conn.execute(
                    "SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables").fetchone()[0]
        finally:
            with _superuser(s) as su:
                su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    if tables[0] < in_dump:
        raise VerificationError(f"{key}: dump lists {in_dump} tables with data, restore created {tables[0]}")
    log.info("restore_checked", key=key, tables=int(tables[0]), rows=int(rows))
    return RestoreResult(key, scratch, in_dump, int(tables[0]), int(rows))
