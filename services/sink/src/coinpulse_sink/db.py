"""PostgreSQL: migrations (Alembic), partition maintenance and the default-partition monitor."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import psycopg
from alembic import command
from alembic.config import Config

from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings


def sqlalchemy_url(s: SinkSettings) -> str:
    return s.pg_dsn().replace("postgresql://", "postgresql+psycopg://", 1)


def alembic_config(s: SinkSettings, names: Names) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("coinpulse_sink") / "migrations"))
    cfg.attributes["names"] = names
    cfg.attributes["url"] = sqlalchemy_url(s)
    return cfg


def migrate(s: SinkSettings, names: Names, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent: an up-to-date database is left as it is)."""
    command.upgrade(alembic_config(s, names), revision)


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(files("coinpulse_sink") / "migrations"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, "coinpulse_sink ships no migrations"
    return head


def current_revision(s: SinkSettings, names: Names) -> str | None:
    with psycopg.connect(s.pg_dsn()) as c:
        reg = c.execute("SELECT to_regclass(%s)", (f'"{names.ops}".alembic_version',)).fetchone()[0]
        if reg is None:
            return None
        row = c.execute(f'SELECT version_num FROM "{names.ops}".alembic_version').fetchone()
        return row[0] if row else None


@dataclass
class PartitionReport:
    created: int
    default_rows: dict[str, int]


def maintain_partitions(s: SinkSettings, names: Names) -> PartitionReport:
    """Create daily partitions ahead (and for any day waiting in a DEFAULT partition); count what is left there."""
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        created = c.execute(f'SELECT "{names.ops}".create_partitions_ahead(%s, %s)',
                            (s.sink_partitions_ahead_days, s.sink_partitions_back_days)).fetchone()[0]
        rows = dict(c.execute(f'SELECT tbl, n FROM "{names.ops}".default_rows()').fetchall())
    return PartitionReport(created, rows)


def drop_namespace(s: SinkSettings, names: Names) -> None:
    """Remove every schema of a (test) namespace."""
    if not names.ns:
        raise ValueError("refusing to drop the production namespace")
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        for sch in (names.gold, names.silver, names.bronze, names.ops):
            c.execute(f'DROP SCHEMA IF EXISTS "{sch}" CASCADE')
