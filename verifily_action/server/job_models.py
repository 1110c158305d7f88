"""The job queue's tables (migration v0003): jobs, their leases (one per attempt), their log lines, the runners seen
and each organization's plan. Times are UTC; SQLite gives them back naive (`queue.utc` makes them aware)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base


class Job(Base):
    """A `train` to run on a runner. States: queued, running, completed, failed, cancelled (the last three final)."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("org", "idempotency_key"), Index("ix_jobs_state_created", "state", "created_at"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    config_text: Mapped[str] = mapped_column(Text)
    config_name: Mapped[str] = mapped_column(String(256))
    labels: Mapped[str] = mapped_column(Text)  # a JSON list, sorted
    dataset_ref: Mapped[str] = mapped_column(String(260))
    dataset_hash: Mapped[str] = mapped_column(String(64))
    datasets_json: Mapped[str] = mapped_column(Text)  # [{"ref", "hash"}]: every dataset version the job reads
    idempotency_key: Mapped[str] = mapped_column(String(64))
    request_sha256: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_by: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the current lease while running
    runner: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the latest lease's runner
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checkpoint_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    run_root_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    billed_minutes: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """One attempt at a job by one runner. Live while not ended and `expires_at` is ahead; each heartbeat moves it."""

    __tablename__ = "leases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    runner: Mapped[str] = mapped_column(String(128))
    runner_token_id: Mapped[str] = mapped_column(String(32))
    gpus: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # a finish outcome, or expired


class JobLog(Base):
    __tablename__ = "job_logs"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class Runner(Base):
    """A runner as it last leased or heartbeated: what the submit's "no runner matches" warning reads."""

    __tablename__ = "runners"
    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    labels: Mapped[str] = mapped_column(Text)  # a JSON list, sorted
    devices_json: Mapped[str] = mapped_column(Text)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OrgPlan(Base):
    __tablename__ = "org_plans"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[str] = mapped_column(String(16))
