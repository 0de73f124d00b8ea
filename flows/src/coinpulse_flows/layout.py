"""Object layout shared by the S3 tier and the local archive: `<table>/date=YYYY-MM-DD/part-0.parquet`."""

from __future__ import annotations

import re
from datetime import date

_DATE = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})(?:/|$)")


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
