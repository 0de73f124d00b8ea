"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op

from coinpulse_sink.migrations.support import names

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    n = names()
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    n = names()
    ${downgrades if downgrades else "pass"}
