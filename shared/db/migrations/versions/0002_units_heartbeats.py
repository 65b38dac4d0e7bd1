"""units with leases and heartbeats; an atomic per-phase counter; no more claim rows

Every task a job runs (a preprocess job's plan, statistics, merge, windows and gather steps; a train or
evaluate job's one run) is a row of ``job_parts`` with a state (queued, running, done), the worker that
holds it and that worker's last heartbeat. ``jobs.parts_done`` counts the finished parts of the current
phase with one ``UPDATE ... RETURNING`` per part, which replaces the ``job_claims`` rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_parts") as batch:
        batch.add_column(sa.Column("state", sa.String(length=10), nullable=False, server_default="queued"))
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE job_parts SET state = 'done' WHERE done")
    with op.batch_alter_table("job_parts") as batch:
        batch.drop_column("done")
        batch.create_index("ix_job_parts_state", ["state"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parts_done", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("job_claims")


def downgrade() -> None:
    op.create_table(
        "job_claims",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "step"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("requeues")
        batch.drop_column("parts_done")
    with op.batch_alter_table("job_parts") as batch:
        batch.add_column(sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE job_parts SET done = (state = 'done')")
    with op.batch_alter_table("job_parts") as batch:
        batch.drop_index("ix_job_parts_state")
        for column in ("requeues", "attempts", "due_at", "heartbeat_at", "worker", "state"):
            batch.drop_column(column)
