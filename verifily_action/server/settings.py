"""The server's defaults, in one place: the CLI's options and the app read them from here."""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_STORE = "verifily-server"  # relative to the working directory: the blob folder and the default SQLite file
DB_FILE = "verifily.db"  # the default database: <store>/verifily.db
RATE_LIMIT_PER_MINUTE = 1200  # requests per token per rolling minute; the 1,201st gets 429 with Retry-After
MAX_CHUNK_BYTES = 16 * 1024 * 1024  # the largest body one upload request may carry
CHUNK_BYTES = 8 * 1024 * 1024  # what the client sends per request (files larger than this go in several chunks)
ADMIN_ORG = "admin"  # the organization of the first token (`server init`): its admin tokens manage every org


def default_db_url(store: str | Path) -> str:
    return f"sqlite:///{(Path(store) / DB_FILE).resolve()}"
