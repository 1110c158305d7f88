"""The FastAPI app: health, who-am-I and tokens here; uploads and dataset versions in `datasets_api`.

Every route but /health needs `Authorization: Bearer <token>` with at least the scope it names (`require`), and acts
inside the token's organization. A `runner` token may call only the runner routes (`leases_api`); the job queue's
user routes are in `jobs_api`. Errors are JSON `{"error": …, "hint": …}` with a 4xx status, which the client turns
into one VerifilyError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from ..errors import VerifilyError
from .auth import Caller, RateLimiter, check_token, new_token
from .blobs import BlobStore, LocalBlobStore
from .models import Token
from .names import check_org, check_scope
from .settings import LEASE_TTL_SECONDS, RATE_LIMIT_PER_MINUTE


class ApiError(HTTPException):
    def __init__(self, status: int, error: str, hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status, detail={"error": error, "hint": hint}, headers=headers)


def session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def writer_session(request: Request) -> Iterator[Session]:
    """A session for read-then-write transactions (the job queue): on SQLite it holds the write lock from BEGIN."""
    with request.app.state.writers() as s:
        yield s


def require(scope: str) -> Callable[..., Caller]:
    """A dependency: the caller's token, checked (known, not revoked, scope at least `scope`, under its rate limit)."""

    def dep(request: Request, s: Session = Depends(session)) -> Caller:
        header = request.headers.get("authorization", "")
        text = header[7:].strip() if header[:7].lower() == "bearer " else ""
        caller = check_token(s, text, runner_ok=True) if text else None
        s.rollback()  # end the read: its connection goes back to the pool, so a route never holds two at once
        if caller is None:
            raise ApiError(
                401,
                "missing, unknown or revoked token" if text else "this endpoint needs a token",
                "log in with `verifily login URL` or set VERIFILY_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
        wait = request.app.state.limiter.hit(caller.token_id)
        if wait:
            raise ApiError(
                429,
                f"rate limit: {request.app.state.limiter.limit} requests per minute per token",
                f"retry in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if not caller.may(scope):
            raise ApiError(403, f"this needs a {scope} token; yours is {caller.scope}")
        return caller

    return dep


class TokenRequest(BaseModel):
    org: str
    scope: str


def create_app(
    db_url: str,
    store: str | Path | BlobStore,
    rate_limit: int = RATE_LIMIT_PER_MINUTE,
    *,
    managed: bool = False,
    lease_ttl: float = LEASE_TTL_SECONDS,
) -> FastAPI:
    """`managed`: the operator's hosted service (the free plan's job limit is enforced); `lease_ttl`: seconds a
    runner's lease lives past its last heartbeat."""
    from .database import make_engine, writer
    from .datasets_api import router
    from .jobs_api import router as jobs_router
    from .leases_api import router as leases_router
    from .runs_api import router as runs_router

    app = FastAPI(title="Verifily server", docs_url=None, redoc_url=None, openapi_url=None)
    engine = make_engine(db_url)
    app.state.engine = engine
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)
    app.state.writers = sessionmaker(writer(engine), expire_on_commit=False)
    app.state.managed, app.state.lease_ttl = managed, float(lease_ttl)
    app.state.store = LocalBlobStore(store) if isinstance(store, (str, Path)) else store
    app.state.limiter = RateLimiter(rate_limit)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"error": str(exc.detail), "hint": None}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(VerifilyError)
    async def _user_error(_request: Request, exc: VerifilyError) -> JSONResponse:
        problems = [p.render() for p in exc.problems]
        return JSONResponse({"error": exc.message, "hint": exc.hint, "problems": problems}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/api/v1/whoami")
    def whoami(caller: Caller = Depends(require("read"))) -> dict[str, Any]:
        return {"token": caller.token_id, "org": caller.org, "scope": caller.scope}

    @app.post("/api/v1/tokens")
    def create_token(
        body: TokenRequest, caller: Caller = Depends(require("admin")), s: Session = Depends(session)
    ) -> dict[str, Any]:
        org, scope = check_org(body.org), check_scope(body.scope)
        if org != caller.org and not caller.site_admin:
            raise ApiError(403, f"an admin token of {caller.org!r} cannot make tokens for {org!r}")
        tid, text = new_token(s, org, scope)
        s.commit()
        return {"id": tid, "org": org, "scope": scope, "token": text}

    @app.delete("/api/v1/tokens/{tid}")
    def revoke_token(
        tid: str, caller: Caller = Depends(require("admin")), s: Session = Depends(session)
    ) -> dict[str, Any]:
        row = s.get(Token, tid)
        if row is None or (row.org != caller.org and not caller.site_admin):
            raise ApiError(404, f"no token {tid!r} in your organization")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(timezone.utc)
            s.commit()
        return {"id": tid, "revoked": True}

    app.include_router(router)
    app.include_router(runs_router)
    app.include_router(jobs_router)
    app.include_router(leases_router)
    from ..dashboard.web import install

    install(app)  # the dashboard's pages under /ui/ (their own login; see dashboard/web.py)
    return app
