"""subscribers: a destination (kind + address) and a status reason; delivery_parts

A subscriber is a reader or a team with exactly one destination: an email address, a Slack
channel or a Discord channel. `destination_kind` and `address` name it (unique together); the
`email` column stays, for email subscribers only. Existing subscribers are email ones: their
address is their email. `status_reason` says why FlareStart paused a subscriber itself (a Slack
channel that was archived). `delivery_parts` keeps the posted parts of split chat digests, so a
retry after a crash never posts a part twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

import bot.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("destination_kind", sa.String(length=20), nullable=False, server_default="email")
        )
        batch_op.add_column(sa.Column("address", sa.String(length=400), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("status_reason", sa.String(length=500), nullable=True))
    subscribers = sa.table(
        "subscribers",
        sa.column("id", sa.Integer()),
        sa.column("email", sa.String()),
        sa.column("address", sa.String()),
    )
    # Every existing subscriber is an email one; one without an address (there should be none)
    # gets a placeholder that keeps the unique constraint satisfied.
    op.execute(
        subscribers.update().values(
            address=sa.case(
                (subscribers.c.email.is_not(None), subscribers.c.email),
                else_=sa.literal("#") + sa.cast(subscribers.c.id, sa.String()),
            )
        )
    )
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_subscribers_destination", ["destination_kind", "address"])

    op.create_table(
        "delivery_parts",
        sa.Column("delivery_key", sa.String(length=300), nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ref", sa.String(length=100), nullable=False),
        sa.Column("posted_at", bot.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_key", "part"),
    )


def downgrade() -> None:
    op.drop_table("delivery_parts")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_subscribers_destination", type_="unique")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("address")
        batch_op.drop_column("destination_kind")
