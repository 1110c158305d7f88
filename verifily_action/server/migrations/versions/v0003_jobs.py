"""The job queue: jobs, leases, job logs, runners, organization plans.

Revision ID: v0003
Revises: v0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0003"
down_revision = "v0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("config_text", sa.Text, nullable=False),
        sa.Column("config_name", sa.String(256), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("dataset_ref", sa.String(260), nullable=False),
        sa.Column("dataset_hash", sa.String(64), nullable=False),
        sa.Column("datasets_json", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("lease_id", sa.String(32), nullable=True),
        sa.Column("runner", sa.String(128), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(64), nullable=True),
        sa.Column("checkpoint_step", sa.Integer, nullable=True),
        sa.Column("run_root_hash", sa.String(64), nullable=True),
        sa.Column("run_id", sa.String(256), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("gpu_seconds", sa.Float, nullable=False),
        sa.Column("wall_seconds", sa.Float, nullable=False),
        sa.Column("billed_minutes", sa.Integer, nullable=False),
        sa.UniqueConstraint("org", "idempotency_key"),
    )
    op.create_index("ix_jobs_state_created", "jobs", ["state", "created_at"])
    op.create_table(
        "leases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False, index=True),
        sa.Column("runner", sa.String(128), nullable=False),
        sa.Column("runner_token_id", sa.String(32), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_heartbeat", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
    )
    op.create_table(
        "job_logs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(32), nullable=False, index=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "runners",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False, index=True),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("devices_json", sa.Text, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_table(
        "org_plans",
        sa.Column("org", sa.String(64), primary_key=True),
        sa.Column("plan", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_state_created", "jobs")
    for table in ("org_plans", "runners", "job_logs", "leases", "jobs"):
        op.drop_table(table)
