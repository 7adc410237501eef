"""suppressions: addresses no digest may go to, kept apart from the subscriber rows

An unsubscribe was only a subscriber row's status, so a file subscriber whose entry went away and
came back (a sync deleted the row, the next one added it active) was mailed again. A suppression
is kept by address; it outlives every row and every sync. Addresses already unsubscribed or
bouncing are suppressed here, so the upgrade loses none of them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("created_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.Column("reoptin_sent_at", bot.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address"),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suppressions_subscriber_id"), ["subscriber_id"], unique=False)
    op.execute(
        "INSERT INTO suppressions (address, reason, source, note, subscriber_id, created_at) "
        "SELECT email, CASE status WHEN 'bouncing' THEN 'hard_bounce' ELSE 'unsubscribed' END, "
        "'migration', '', id, COALESCE(unsubscribed_at, updated_at) FROM subscribers "
        "WHERE email IS NOT NULL AND status IN ('unsubscribed', 'bouncing')"
    )


def downgrade() -> None:
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_subscriber_id"))
    op.drop_table("suppressions")
