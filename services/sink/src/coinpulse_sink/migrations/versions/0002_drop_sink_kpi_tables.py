"""Drop the sink's empty gold.kpi_* tables: the KPI marts are written by the gold refresh flow to its own schema.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op
from coinpulse_sink.migrations.support import names

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KPI_TABLES = ("kpi_top_trade_value", "kpi_volatility", "kpi_vwap", "kpi_price_mention")


def upgrade() -> None:
    gold = names().gold
    for t in KPI_TABLES:
        op.execute(f'DROP TABLE IF EXISTS "{gold}"."{t}" CASCADE')


def downgrade() -> None:
    """Nothing to restore: the tables never held data (the flow's marts are the KPI tables)."""
