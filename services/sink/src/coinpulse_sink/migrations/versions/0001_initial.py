"""Initial model: bronze ledger, silver and gold tables partitioned by day, KPI marts, roles and partition jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op
from coinpulse_sink import ddl, model
from coinpulse_sink.migrations.support import names

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    n = names()
    for stmt in ddl.roles_sql() + ddl.schemas_sql(n):
        op.execute(stmt)
    # silver/gold objects belong to the owner role, so the writer (its member) can evolve them and nothing else
    op.execute(f"SET ROLE {ddl.OWNER_ROLE}")
    for t in model.TABLES:
        if t.schema == "bronze":
            continue
        for stmt in model.create_table_sql(t, n.schema(t.schema)):
            op.execute(stmt)
    for stmt in ddl.partition_functions_sql(n):
        op.execute(stmt)
    op.execute("RESET ROLE")
    for stmt in model.create_table_sql(model.S3_OBJECTS, n.bronze):
        op.execute(stmt)
    for stmt in ddl.reader_grants_sql(n):
        op.execute(stmt)


def downgrade() -> None:
    n = names()
    for s in (n.gold, n.silver, n.bronze):
        op.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
    for f in ("create_partitions_ahead(integer, integer)", "default_rows()", "partitioned_tables()",
              "ensure_day_partition(text, text, text, date)"):
        op.execute(f'DROP FUNCTION IF EXISTS "{n.ops}".{f}')
