"""Day partitions of any range-partitioned table, discovered from the catalog (pg_inherits / pg_class).

Nothing here knows the project's tables: a partition qualifies when its bound is one UTC day,
`FOR VALUES FROM ('2024-05-01 00:00:00+00') TO ('2024-05-02 00:00:00+00')` (timestamptz) or
`FROM ('2024-05-01') TO ('2024-05-02')` (date / timestamp). Default partitions and other bounds are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg

_BOUND = re.compile(r"^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$")
_SHORT_TZ = re.compile(r"([+-]\d\d)$")


@dataclass(frozen=True)
class Partition:
    parent_schema: str
    parent: str
    schema: str
    name: str
    day: date
    size_bytes: int = 0

    @property
    def table(self) -> str:
        """The entity name used in object keys and query views: `<schema>.<table>` of the parent."""
        return f"{self.parent_schema}.{self.parent}"

    def age_days(self, today: date) -> int:
        return (today - self.day).days


def _instant(text: str) -> datetime:
    t = _SHORT_TZ.sub(r"\1:00", text.strip())
    dt = datetime.fromisoformat(t)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_day_bound(bound: str | None) -> date | None:
    """The UTC day a partition bound covers, or None when the bound is not exactly one day."""
    if not bound:
        return None
    m = _BOUND.match(bound.strip())
    if not m:
        return None
    try:
        lo, hi = _instant(m.group(1)), _instant(m.group(2))
    except ValueError:
        return None
    if hi - lo != timedelta(days=1) or (lo.hour, lo.minute, lo.second, lo.microsecond) != (0, 0, 0, 0):
        return None
    return lo.date()


_SQL = """
SELECT pn.nspname, pc.relname, cn.nspname, cc.relname, pg_get_expr(cc.relpartbound, cc.oid),
       pg_total_relation_size(cc.oid)
FROM pg_inherits i
JOIN pg_class pc ON pc.oid = i.inhparent
JOIN pg_namespace pn ON pn.oid = pc.relnamespace
JOIN pg_class cc ON cc.oid = i.inhrelid
JOIN pg_namespace cn ON cn.oid = cc.relnamespace
WHERE pc.relkind = 'p' AND cc.relkind = 'r' AND pn.nspname = ANY(%s)
ORDER BY pn.nspname, pc.relname, cc.relname
"""


def leaves(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str, str, str, str | None, int]]:
    """Every leaf partition of the range-partitioned tables in `schemas`: (parent schema, parent, schema, name,
    bound, size in bytes)."""
    return [(ps, p, cs, c, bound, int(size or 0)) for ps, p, cs, c, bound, size in conn.execute(_SQL, (schemas,))]


def discover(conn: psycopg.Connection, schemas: list[str]) -> list[Partition]:
    """The day partitions (a bound of exactly one UTC day) of the tables in `schemas`."""
    out = []
    for ps, p, cs, c, bound, size in leaves(conn, schemas):
        day = parse_day_bound(bound)
        if day is not None:
            out.append(Partition(ps, p, cs, c, day, size))
    return out


def others(conn: psycopg.Connection, schemas: list[str]) -> list[tuple[str, str, str]]:
    """The leaves that are not one day (DEFAULT, other bounds), whose rows may belong to any day:
    (`<parent schema>.<parent>`, schema, name)."""
    return [(f"{ps}.{p}", cs, c) for ps, p, cs, c, bound, _ in leaves(conn, schemas) if parse_day_bound(bound) is None]


def due(parts: list[Partition], today: date, older_than_days: int) -> list[Partition]:
    """Partitions strictly older than `older_than_days` (a 15-day-old partition is due at 14), oldest first."""
    return sorted((p for p in parts if p.age_days(today) > older_than_days), key=lambda p: (p.day, p.table))
