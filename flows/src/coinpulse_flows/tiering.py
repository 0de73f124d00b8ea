"""Moving data down the tiers: PostgreSQL partition → Parquet on S3 → local archive. Nothing is deleted before the
copy has been read back and verified, and every step can be re-run after a crash at any point.

PostgreSQL → S3, per due partition, in one session that holds `SHARE` on the partition (writers wait, readers
don't) from before the export until the drop, so the verified copy is exactly what gets dropped:

1. stream the partition as Arrow batches (binary COPY, read on a thread; see `export`) through a per-row digest
   into a zstd Parquet writer whose file is a multipart upload: each 8 MiB part goes to S3 while PostgreSQL is
   still being read, and at most a few batches and parts are in memory whatever the partition size. Only if the
   row count matches `count(*)` under the lock is the upload completed, with the row count, digest and sha256 as
   object metadata (also in the Parquet footer);
2. download the object again (ranged GETs in parallel) and check row count, content digest (DuckDB scanning the
   Parquet file) and sha256;
3. only then `DETACH PARTITION` and `DROP TABLE`, and commit.

A crash before 3 leaves the partition in place (an unfinished upload leaves no object; a finished one is overwritten
identically by the re-run); a crash after it leaves a verified object.

A day already tiered keeps its objects: late rows land in a re-created partition, which is tiered as the day's next
part (`part-<n>`, n above every part of the day in S3 and in the archive) and never over an earlier one. A part
records the oid of the partition it copies (`layout.part_source`), so the re-run after a crash finds and rewrites
its own part, and the query tells a part still in PostgreSQL from an earlier one.

S3 → local archive: download to `<file>.part`, verify against the metadata, fsync + rename, then delete the object;
a re-run finds the verified file and only deletes. A file already at the object's path with other content is never
replaced: the object goes to `part-<n>.<sha256[:12]>.parquet` beside it. Keys that are not safe relative paths are
refused.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
from coinpulse_common.logging import get_logger
from coinpulse_common.paths import state_dir
from psycopg import sql

from coinpulse_flows import layout
from coinpulse_flows.digest import digest_parquet, sha256_file
from coinpulse_flows.export import VerificationError, export_partition
from coinpulse_flows.partitions import Partition, discover, due
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Manifest, Store, fsync_rename

log = get_logger("coinpulse.flows.tiering")

CRASH_ENV = "COINPULSE_FLOWS_CRASH_AT"


def crash_point(name: str) -> None:
    """Fault injection for tests: die hard (no cleanup, no commit) at the named point."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("crash_injected", point=name)
        os._exit(97)


def spool_dir() -> Path:
    d = state_dir() / "spool"
    d.mkdir(parents=True, exist_ok=True)
    return d


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass
class ExportResult:
    table: str
    partition: str
    day: str
    key: str
    rows: int
    bytes: int
    digest: str
    state: str  # tiered | gone


def verify_file(path: Path, expected: Manifest) -> None:
    """Raise VerificationError unless the file has the expected bytes, row count and content digest. The sha256 runs
    on a thread beside DuckDB's scan: it is what later proves an archive copy, so it is checked here too."""
    with ThreadPoolExecutor(1, thread_name_prefix="verify-sha") as ex:
        sha_f = ex.submit(sha256_file, path) if expected.sha256 else None
        got, unreadable = None, None
        try:
            got = digest_parquet(path)
        except (duckdb.Error, pa.ArrowException, OSError) as e:
            unreadable = e
        sha = sha_f.result() if sha_f is not None else ""
    if sha != expected.sha256:
        raise VerificationError(f"{path.name}: sha256 {sha} != expected {expected.sha256}")
    if got is None:
        raise VerificationError(f"{path.name}: unreadable as Parquet: {unreadable}") from unreadable
    if got.rows != expected.rows:
        raise VerificationError(f"{path.name}: {got.rows} rows read back, expected {expected.rows}")
    if got.hex != expected.digest:
        raise VerificationError(f"{path.name}: content digest {got.hex} != expected {expected.digest}")


def _exists(conn: psycopg.Connection, p: Partition) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (sql.Identifier(p.schema, p.name).as_string(conn),)).fetchone()[0]


def local_parts(s: FlowSettings, table: str, day: date) -> list[Path]:
    d = s.archive_dir / layout.safe_relpath(layout.day_prefix(table, day, s.tier_prefix).rstrip("/"))
    return sorted(d.glob("part-*.parquet")) if d.is_dir() else []


def part_key(s: FlowSettings, store: Store, table: str, day: date, source: str) -> str:
    """Where a partition's copy goes: its own part if an earlier run left one (same source oid), else the next
    part number after every part of the day in S3 and in the archive."""
    used = [n for f in local_parts(s, table, day) if (n := layout.part_of_key(f.name)) is not None]
    for o in store.list(layout.day_prefix(table, day, s.tier_prefix)):
        n = layout.part_of_key(o.key)
        if n is None:
            continue
        used.append(n)
        m = store.manifest(o.key)
        if m is not None and layout.source_oid(m.source) is not None and m.source == source:
            return o.key
    return layout.tier_key(table, day, s.tier_prefix, max(used) + 1 if used else 0)


def tier_partition(s: FlowSettings, p: Partition, store: Store) -> ExportResult:
    """Export, upload, verify, then detach and drop one partition (see the module docstring)."""
    key = layout.tier_key(p.table, p.day, s.tier_prefix)
    part = sql.Identifier(p.schema, p.name)
    with psycopg.connect(s.pg_dsn()) as conn:  # one transaction, committed at the end of the block
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{s.lock_timeout_s}s")))
        if not _exists(conn, p):
            return ExportResult(p.table, p.name, p.day.isoformat(), key, 0, 0, "", "gone")
        conn.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE MODE").format(part))
        oid = conn.execute("SELECT %s::regclass::oid", (part.as_string(conn),)).fetchone()[0]
        source = layout.part_source(p.schema, p.name, oid)
        key = part_key(s, store, p.table, p.day, source)
        pg_rows = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(part)).fetchone()[0]
        t0 = time.perf_counter()
        manifest, size = export_partition(s, p.schema, p.name, store, key, source, pg_rows)
        crash_point("after_upload")
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=spool_dir()) as tmp:
            back = Path(tmp) / "readback.parquet"
            store.download(key, back)
            remote = store.manifest(key)
            if remote != manifest:
                raise VerificationError(f"{key}: object metadata {remote} != {manifest}")
            verify_file(back, manifest)
            t2 = time.perf_counter()
        crash_point("after_verify")
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            sql.Identifier(p.parent_schema, p.parent), part))
        conn.execute(sql.SQL("DROP TABLE {}").format(part))
    log.info("partition_tiered", table=p.table, partition=p.name, day=str(p.day), rows=manifest.rows, key=key,
             bytes=size, export_upload_s=round(t1 - t0, 2), verify_s=round(t2 - t1, 2))
    return ExportResult(p.table, p.name, p.day.isoformat(), key, manifest.rows, size, manifest.digest, "tiered")


def due_partitions(s: FlowSettings, today: date | None = None) -> list[Partition]:
    with psycopg.connect(s.pg_dsn(), autocommit=True) as conn:
        return due(discover(conn, s.tier_schemas), today or today_utc(), s.tier_after_days)


# --- S3 → local archive --------------------------------------------------------------------------------------
@dataclass
class ArchiveResult:
    key: str
    path: str
    bytes: int
    state: str  # archived | already-archived | gone


def archive_due(s: FlowSettings, store: Store, today: date | None = None) -> list[str]:
    """Keys of objects older than `archive_after_days` (by their `date=` segment, else by last-modified)."""
    today = today or today_utc()
    out = []
    for o in store.list(s.tier_prefix):
        if any(o.key.startswith(p) for p in s.archive_skip_prefixes):
            continue
        day = layout.day_of_key(o.key) or datetime.fromtimestamp(o.last_modified, UTC).date()
        if (today - day).days > s.archive_after_days:
            out.append(o.key)
    return sorted(out)


def _verify_local(path: Path, head: dict) -> None:
    size = path.stat().st_size
    if size != int(head["ContentLength"]):
        raise VerificationError(f"{path.name}: {size} bytes, object has {head['ContentLength']}")
    manifest = Manifest.from_meta(head.get("Metadata", {}))
    if manifest is not None:
        verify_file(path, manifest)
        return
    etag = head.get("ETag", "").strip('"')
    if etag and "-" not in etag:  # a single-part upload: the ETag is the MD5 of the bytes
        md5 = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                md5.update(block)
        if md5.hexdigest() != etag:
            raise VerificationError(f"{path.name}: md5 {md5.hexdigest()} != ETag {etag}")


def archive_path(s: FlowSettings, key: str) -> Path:
    """The archive file of an object key, which never lies outside the archive folder (ValueError otherwise)."""
    root = s.archive_dir.resolve()
    final = (root / layout.safe_relpath(key)).resolve()
    if not final.is_relative_to(root) or final == root:
        raise ValueError(f"object key {key!r} resolves to {final}, outside the archive folder {root}; refusing")
    return final


def _alternate(final: Path, head: dict) -> Path:
    """The name an object takes when another file already holds its path: `<stem>.<sha256[:12]><suffix>`."""
    meta = Manifest.from_meta(head.get("Metadata", {}))
    tag = (meta.sha256 if meta is not None and meta.sha256 else head.get("ETag", "").strip('"').split("-")[0])[:12]
    return final.with_name(f"{final.stem}.{tag or 'x'}{final.suffix}")


def archive_object(s: FlowSettings, store: Store, key: str) -> ArchiveResult:
    final = archive_path(s, key)
    head = store.head(key)
    if head is None:
        return ArchiveResult(key, str(final), final.stat().st_size if final.exists() else 0, "gone")
    final.parent.mkdir(parents=True, exist_ok=True)
    taken = False
    for candidate in (final, _alternate(final, head)):
        if candidate.exists():
            try:
                _verify_local(candidate, head)
            except VerificationError:
                taken = True  # another file (a verified copy of other rows): never replaced
                continue
            store.delete(key)
            return ArchiveResult(key, str(candidate), candidate.stat().st_size, "already-archived")
    if taken:
        final = _alternate(final, head)
        if final.exists():
            raise VerificationError(f"{key}: both {final.name} and the object's own path hold other content")
    tmp = final.with_name(final.name + ".part")
    store.download(key, tmp)
    try:
        _verify_local(tmp, head)
    except VerificationError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_rename(tmp, final)
    crash_point("after_archive_copy")
    store.delete(key)
    log.info("object_archived", key=key, path=str(final))
    return ArchiveResult(key, str(final), final.stat().st_size, "archived")


def result_dict(r: ExportResult | ArchiveResult) -> dict:
    return asdict(r)
