"""deliveries: lease_until, so a row being sent is claimed by one sender at a time

A delivery in "sending" was taken over by any caller, so two doors (two `send --now`, the CLI and
the worker) could send the same digest at once. The sender now holds the row until lease_until;
another sender finds it busy until then, and takes it over only once the lease has expired (the
sender crashed). Rows already "sending" get no lease: they count as expired, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", bot.store.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
