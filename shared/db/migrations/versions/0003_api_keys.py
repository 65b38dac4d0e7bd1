"""API keys: the api_keys table and the key that submitted each job

``api_keys`` holds each key's public id, name and scope and a keyed hash of the whole key (never the key
itself, see ``emgpose.auth``), when it was made, last used (coarsely) and revoked. ``jobs.api_key_id``
names the key that submitted a job (NULL for jobs submitted with AUTH_ENABLED=false and for every job
older than this revision), so that the per-key limit on jobs in flight can count them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its foreign key in place. Batch mode would copy `jobs` into a new table
        # and drop the old one, and with foreign keys on, dropping it deletes every job's parts (CASCADE).
        op.execute(
            "ALTER TABLE jobs ADD COLUMN api_key_id VARCHAR(16) CONSTRAINT fk_jobs_api_key_id REFERENCES api_keys (id)"
        )
    else:
        op.add_column("jobs", sa.Column("api_key_id", sa.String(length=16), nullable=True))
        op.create_foreign_key("fk_jobs_api_key_id", "jobs", "api_keys", ["api_key_id"], ["id"])
    op.create_index("ix_jobs_api_key_id", "jobs", ["api_key_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_api_key_id", table_name="jobs")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE jobs DROP COLUMN api_key_id")  # SQLite >= 3.35; no copy of the table
    else:
        op.drop_constraint("fk_jobs_api_key_id", "jobs", type_="foreignkey")
        op.drop_column("jobs", "api_key_id")
    op.drop_table("api_keys")
