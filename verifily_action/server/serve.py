"""`verifily server init` and `verifily server`: create or migrate the database (and make the first admin token),
then serve the app with Uvicorn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import VerifilyError
from .database import check_current, make_engine, migrate, redact, sqlite_file
from .models import Token
from .settings import ADMIN_ORG, LEASE_TTL_SECONDS, default_db_url


@dataclass(frozen=True)
class InitResult:
    url: str
    before: str | None
    after: str
    token: str | None  # the first admin token, when this init made it


def init(db: str | None, store: str | Path) -> InitResult:
    url = db or default_db_url(store)
    engine = make_engine(url)
    try:
        before, after = migrate(engine)
        with Session(engine) as s:
            token = None
            if not s.scalar(select(func.count()).select_from(Token)):
                from .auth import new_token

                _, token = new_token(s, ADMIN_ORG, "admin")
                s.commit()
    finally:
        engine.dispose()
    return InitResult(redact(url), before, after, token)


def serve(
    db: str | None,
    store: str | Path,
    host: str,
    port: int,
    rate_limit: int,
    managed: bool = False,
    lease_ttl: float = LEASE_TTL_SECONDS,
) -> None:
    import uvicorn

    from .app import create_app

    url = db or default_db_url(store)
    missing = sqlite_file(url)
    if missing is not None and not missing.is_file():  # checked before connecting, which would create the file
        raise VerifilyError(
            f"the server database {missing} does not exist", hint=f"run `verifily server init --db {url}` first"
        )
    engine = make_engine(url)
    try:
        check_current(engine, url)
    finally:
        engine.dispose()
    if lease_ttl <= 0:
        raise VerifilyError(f"--lease-ttl {lease_ttl} is not a positive number of seconds")
    app = create_app(url, Path(store), rate_limit=rate_limit, managed=managed, lease_ttl=lease_ttl)
    mode = ", managed mode" if managed else ""
    where = f"blobs in {Path(store).resolve()}, on http://{host}:{port}{mode}"
    print(f"verifily server: {redact(url)}, {where}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
