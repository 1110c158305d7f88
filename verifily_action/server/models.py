"""The server's tables (SQLAlchemy 2 declarative). Alembic's migrations in `migrations/versions/` create them;
`database.check_current` refuses to serve a database whose revision is not the newest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Token(Base):
    """An API token: `vf_<id>_<secret>`; only the sha256 of the secret is stored."""

    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(8))  # read | write | admin
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Blob(Base):
    """A file in the blob store, by content hash (verified when its upload completed)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class OrgBlob(Base):
    """Which organization uploaded which blob: an org sees (and skips re-uploading) only its own blobs, so the store's
    deduplication tells nobody what another org holds."""

    __tablename__ = "org_blobs"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), primary_key=True)


class DatasetVersion(Base):
    """A committed dataset version: written in one transaction after every file was verified, so a version that
    exists here is complete (there is no half-uploaded state in this table)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("org", "name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    dataset_hash: Mapped[str] = mapped_column(String(64))
    manifest_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(32))  # the token id that pushed it


class DatasetFile(Base):
    __tablename__ = "dataset_files"
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    split: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))
    rows: Mapped[int] = mapped_column(BigInteger)


class Run(Base):
    """A run folder, by the root hash of its chain: pushed only after the server recomputed that chain."""

    __tablename__ = "runs"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    root_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(256))  # run_meta.json's id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(32))


class RunFile(Base):
    __tablename__ = "run_files"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    root_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"))


class ModelVersion(Base):
    """`model@version` -> a run. Set once: a version never changes."""

    __tablename__ = "model_versions"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelStage(Base):
    """`model@stage` (production, staging, …) -> a version. Moves whenever a push names the stage."""

    __tablename__ = "model_stages"
    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    stage: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
