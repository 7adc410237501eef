"""jobs: the claim index covers the claim's whole order (status, run_at, id)

A claim reads the first n due jobs in (run_at, id) order. With (status, run_at) alone PostgreSQL
sorts every queued job that shares a run_at (plan_due enqueues a whole morning with one) before it
can take n of them; with id in the index the rows come out in claim order. SQLite's index already
ends with the rowid, so there the new index only makes it explicit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.create_index("ix_jobs_claim", ["status", "run_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.create_index("ix_jobs_claim", ["status", "run_at"], unique=False)
