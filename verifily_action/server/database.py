"""Engines and migrations. `migrate` (run by `verifily server init`) brings a database to the newest Alembic
revision; `check_current` refuses to serve one that is behind. URLs: `sqlite:///path` (the default, one file) or
`postgresql://…` (run through psycopg 3: `postgresql://` is read as `postgresql+psycopg://`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VerifilyError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
IMMEDIATE = "verifily_write_lock"  # an execution option: on SQLite, BEGIN IMMEDIATE (PostgreSQL ignores it)


def normalize_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise VerifilyError(
            f"database URL {url.split('://')[0]}://… is not supported",
            hint="use sqlite:///PATH (the default) or postgresql://USER@HOST:PORT/DB",
        )
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for another database or an in-memory one)."""
    path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def make_engine(url: str) -> Any:
    from sqlalchemy import create_engine, event

    url = normalize_url(url)
    if url.startswith("sqlite:"):
        if (path := sqlite_file(url)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _immediate(conn: Any) -> None:
            # A write transaction (`writer`) takes SQLite's write lock at BEGIN, before its first read, so two
            # leasers never read the same queued job and a read-then-write never fails to upgrade its lock. Others
            # keep pysqlite's default (BEGIN before the first write).
            if conn.get_execution_options().get(IMMEDIATE):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def writer(engine: Any) -> Any:
    """The engine for transactions that read, then write what they read (the job queue): on SQLite they take the
    write lock first; on PostgreSQL they lock rows with SELECT … FOR UPDATE instead."""
    return engine.execution_options(**{IMMEDIATE: True})


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Any, target: str = "head") -> tuple[str | None, str]:
    """Upgrade to `target` (the newest revision unless a test asks for an older one); (revision before, after)."""
    from alembic import command

    before = _connect_or_explain(engine, current_revision)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), target)
    return before, head_revision() if target == "head" else target


def check_current(engine: Any, url: str) -> None:
    rev = _connect_or_explain(engine, current_revision)
    if rev != head_revision():
        state = "is empty" if rev is None else f"is at revision {rev}, not {head_revision()}"
        raise VerifilyError(
            f"the server database {redact(url)} {state}",
            hint=f"run `verifily server init --db {redact(url)}` first (it creates or migrates the database)",
        )


def _connect_or_explain(engine: Any, fn: Any) -> Any:
    from sqlalchemy.exc import OperationalError

    try:
        return fn(engine)
    except OperationalError as e:
        raise VerifilyError(
            f"cannot connect to the database {redact(str(engine.url))}: {str(e.orig).strip().splitlines()[0]}",
            hint="check --db (host, port, user, database) and that the database server is running",
        ) from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown as given, minus anything after '@'
        return url.split("@")[-1]
