"""Object layout shared by the S3 tier and the local archive: `<table>/date=YYYY-MM-DD/part-<n>.parquet`.

A day is one or more parts: part 0 is the day's partition as first tiered; a partition re-created by late rows and
tiered again becomes the next part beside it, never over it. Each part's source (manifest `source`, also in the
Parquet footer) is `<schema>.<partition>@<oid>`: the PostgreSQL table it is a copy of, so a reader can tell a part
that still exists in PostgreSQL (tiered, not yet dropped) from the rows of an earlier partition of the same day.
"""

from __future__ import annotations

import re
from datetime import date

_DATE = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})(?:/|$)")
_PART = re.compile(r"(?:^|/)part-(\d+)(?:\.([0-9a-f]+))?\.parquet$")


def tier_key(table: str, day: date, prefix: str = "", part: int = 0) -> str:
    return f"{prefix}{table}/date={day.isoformat()}/part-{part}.parquet"


def table_prefix(table: str, prefix: str = "") -> str:
    return f"{prefix}{table}/"


def day_of_key(key: str) -> date | None:
    """The `date=YYYY-MM-DD` path segment of a key, if any."""
    m = _DATE.search(key)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def table_of_key(key: str, prefix: str = "") -> str | None:
    """The `<table>` segment of a tier key (the one before `date=`)."""
    if prefix and not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    head, sep, _ = rest.partition("/date=")
    return head if sep and "/" not in head else None


def day_prefix(table: str, day: date, prefix: str = "") -> str:
    return f"{prefix}{table}/date={day.isoformat()}/"


def part_of_key(key: str) -> int | None:
    """n of a `part-<n>.parquet` (or archive `part-<n>.<sha>.parquet`) key."""
    m = _PART.search(key)
    return int(m.group(1)) if m else None


def part_rank(key: str) -> int:
    """How new a part's rows are among the parts of its day: `part-<n>` ranks by n (parts are numbered in the order
    they were tiered), and an archive's `part-<n>.<sha>` (an object stored beside a file that already held part n's
    path, so written after it) just above `part-<n>`. ValueError for a key that is no part."""
    m = _PART.search(key)
    if not m:
        raise ValueError(f"{key!r} is not a part key (`part-<n>.parquet` or `part-<n>.<sha>.parquet`)")
    return 2 * int(m.group(1)) + (1 if m.group(2) else 0)


def part_source(schema: str, name: str, oid: int) -> str:
    return f"{schema}.{name}@{oid}"


def source_oid(source: str | None) -> int | None:
    """The PostgreSQL table oid a part was exported from (None for parts written before oids were recorded)."""
    if not source or "@" not in source:
        return None
    try:
        return int(source.rsplit("@", 1)[1])
    except ValueError:
        return None


def safe_relpath(key: str) -> str:
    """`key` as a path relative to a folder it cannot leave: no leading `/`, no `.`/`..`/empty segment, no
    backslash, no NUL. Raises ValueError naming the key."""
    segs = key.split("/")
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or any(s in ("", ".", "..") for s in segs):
        raise ValueError(f"object key {key!r} is not a safe relative path (leading `/`, `..`, `.` or empty segment, "
                         "backslash): it would write outside the archive folder; refusing")
    return key
