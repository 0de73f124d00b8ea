"""Alembic environment: the connection and the namespace come from `coinpulse_sink.db.migrate()`.

The version table lives in the namespace's `ops` schema, so each namespace migrates independently.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from coinpulse_sink.naming import Names

config = context.config
names: Names = config.attributes.get("names") or Names(context.get_x_argument(as_dictionary=True).get("ns", ""))
config.attributes["names"] = names


def run_migrations_online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, future=True)
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{names.ops}"'))
        conn.commit()
        context.configure(connection=conn, version_table="alembic_version", version_table_schema=names.ops,
                          transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `python -m coinpulse_sink migrate`")
run_migrations_online()
