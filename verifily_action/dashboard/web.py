"""The dashboard's routes under /ui/, behind the API's tokens.

Login: the token is entered once into a form; the server checks it and sets it as the cookie `vf_session`
(HttpOnly, SameSite=Strict, Path=/ui, Secure over https). The cookie holds the token itself rather than a server-side
session: every page re-checks it against the tokens table, so revoking the token logs the browser out at once, and
nothing is kept in memory (several server processes, a restart). The API never reads the cookie (it wants
`Authorization: Bearer`), so a cross-site request can reach no endpoint with it; pages only read (GET). The two POSTs
carry a CSRF token: login a random double-submit value (cookie `vf_csrf` and the form field), logout one derived from
the session token (an HMAC), both compared in constant time.

Every page: read scope, the caller's organization only, the per-token rate limit, and the headers of `SECURITY`
(render.CSP forbids any script not served by this server).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import VerifilyError
from ..server.app import ApiError, session
from ..server.auth import Caller, check_token
from ..server.models import DatasetVersion, ModelVersion, Run, RunFile
from ..server.names import check_name, check_sha256
from . import render
from .compareview import compare_runs, compare_view
from .runview import run_view
from .stored import dataset_folder, org_root, run_folder

SESSION_COOKIE = "vf_session"
CSRF_COOKIE = "vf_csrf"
SECURITY = {
    "Content-Security-Policy": render.CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
router = APIRouter(prefix="/ui", include_in_schema=False)  # pages, not API: the login and static files need no token


class LoginNeeded(Exception):
    pass


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=SECURITY)


def _csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"verifily-dashboard-logout", hashlib.sha256).hexdigest()[:32]


def viewer(request: Request, s: Session = Depends(session)) -> Caller:
    """The logged-in caller (read scope at least); a browser without a valid session is sent to the login page."""
    token = request.cookies.get(SESSION_COOKIE, "")
    caller = check_token(s, token) if token else None
    if caller is None:
        raise LoginNeeded()
    wait = request.app.state.limiter.hit(caller.token_id)
    if wait:
        raise ApiError(429, f"rate limit: {request.app.state.limiter.limit} requests per minute per token")
    return caller


def _page(template: str, request: Request, caller: Caller, **context: Any) -> HTMLResponse:
    token = request.cookies.get(SESSION_COOKIE, "")
    return _html(render.page(template, org=caller.org, csrf=_csrf_for(token), **context))


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=10).items()}


def _cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path="/ui", secure=request.url.scheme == "https")


@router.get("/static/{name}")
def static(name: str) -> Response:
    try:
        text = render.static_text(name)
    except KeyError:
        raise ApiError(404, f"no static file {name!r}") from None
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    return Response(text, media_type=f"{kind}; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"})


@router.get("/login")
def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    response = _html(render.page("login.html", csrf=csrf, error=error), 401 if error else 200)
    _cookie(response, request, CSRF_COOKIE, csrf)
    return response


@router.post("/login")
async def login(request: Request, s: Session = Depends(session)) -> Response:
    form = await _form(request)
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, form.get("csrf", "")):
        return login_form(request, "The form expired or came from another site: log in again.")
    token = form.get("token", "").strip()
    caller = check_token(s, token) if token else None
    if caller is None:
        return login_form(request, "Unknown or revoked token.")
    response = RedirectResponse("/ui/", status_code=303, headers=SECURITY)
    _cookie(response, request, SESSION_COOKIE, token)
    response.delete_cookie(CSRF_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or not hmac.compare_digest(_csrf_for(token), form.get("csrf", "")):
        raise ApiError(403, "logout needs the form of this site")
    response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


def _runs(s: Session, org: str) -> list[dict[str, Any]]:
    versions: dict[str, list[str]] = {}
    for mv in s.scalars(select(ModelVersion).where(ModelVersion.org == org)):
        versions.setdefault(mv.root_hash, []).append(f"{mv.model}@{mv.version}")
    rows = s.scalars(select(Run).where(Run.org == org).order_by(Run.created_at.desc()))
    return [
        {"root_hash": r.root_hash, "run_id": r.run_id, "created_at": r.created_at.isoformat(timespec="seconds"),
         "versions": sorted(versions.get(r.root_hash, []))}
        for r in rows
    ]  # fmt: skip


def _cache(request: Request) -> Path:
    return Path(request.app.state.store.root) / "dashboard"


def _run_dir(request: Request, s: Session, org: str, root: str) -> Path:
    root = check_sha256(root)
    run = s.get(Run, (org, root))
    if run is None:
        raise ApiError(404, f"no run {root} in organization {org!r}")
    files = {f.path: f.sha256 for f in s.scalars(select(RunFile).where(RunFile.org == org, RunFile.root_hash == root))}
    return run_folder(_cache(request), request.app.state.store, root, files, _run_name(request, files))


def _run_name(request: Request, files: dict[str, str]) -> str | None:
    from ..errors import VerifilyError
    from ..runs.layout import CONFIG
    from ..yamlsource import load_yaml

    path = request.app.state.store.local_path(files.get(CONFIG, ""))
    try:
        cfg = load_yaml(path, "run config") if path else None
    except VerifilyError:  # unreadable or not YAML: the page shows the root hash instead
        return None
    return str(cfg.get("run_name")) if isinstance(cfg, dict) and cfg.get("run_name") else None


def _org_dataset(request: Request, s: Session, org: str, root: Path, run_dir: Path) -> None:
    import json

    from ..runs.files import read_json
    from ..runs.layout import RUN_META
    from ..server.commit import find_version

    dataset = read_json(run_dir / RUN_META).get("dataset")
    ref = str(dataset.get("ref") or "") if isinstance(dataset, dict) else ""
    name, _, version = ref.partition("@")
    try:
        row = find_version(s, org, check_name(name, "dataset"), check_name(version, "version")) if version else None
    except VerifilyError:
        return
    if row is not None:
        dataset_folder(root, request.app.state.store, json.loads(row.manifest_json))


@router.get("/")
def index(request: Request, caller: Caller = Depends(viewer), s: Session = Depends(session)) -> HTMLResponse:
    return _page("index.html", request, caller, runs=_runs(s, caller.org))


@router.get("/runs/{root}")
def run_page(
    root: str, request: Request, caller: Caller = Depends(viewer), s: Session = Depends(session)
) -> HTMLResponse:
    folder = _run_dir(request, s, caller.org, root)
    return _page("run.html", request, caller, run=run_view(folder), root=root)


@router.get("/compare")
def compare_page(
    request: Request,
    baseline: str | None = None,
    run: str | None = None,
    caller: Caller = Depends(viewer),
    s: Session = Depends(session),
) -> HTMLResponse:
    runs = _runs(s, caller.org)
    cmp, error = None, None
    if baseline and run:
        dirs = [_run_dir(request, s, caller.org, baseline), _run_dir(request, s, caller.org, run)]
        root = org_root(_cache(request), caller.org)
        for d in dirs:  # the versions the runs trained on, from this organization's pushes: the dataset diff's data
            _org_dataset(request, s, caller.org, root, d)
        try:
            cmp = compare_view(compare_runs(dirs, root))
        except VerifilyError as e:  # runs that cannot be compared (other tasks, no evaluation): said on the page
            error = e.message + (f" ({e.hint})" if e.hint else "")
    return _page("compare.html", request, caller, runs=runs, baseline=baseline, candidate=run, cmp=cmp, error=error)


@router.get("/datasets")
def datasets_page(request: Request, caller: Caller = Depends(viewer), s: Session = Depends(session)) -> HTMLResponse:
    grouped: dict[str, list[dict[str, Any]]] = {}
    rows = s.scalars(
        select(DatasetVersion).where(DatasetVersion.org == caller.org).order_by(DatasetVersion.name, DatasetVersion.id)
    )
    for r in rows:
        grouped.setdefault(r.name, []).append(
            {
                "version": r.version,
                "dataset_hash": r.dataset_hash,
                "created_at": r.created_at.isoformat(timespec="seconds"),
            }
        )
    return _page("datasets.html", request, caller, datasets=grouped)


@router.get("/datasets/{name}/diff")
def dataset_diff_page(
    name: str, a: str, b: str, request: Request, caller: Caller = Depends(viewer), s: Session = Depends(session)
) -> HTMLResponse:
    import json

    from ..datasets import load_manifest
    from ..datasets.info import dataset_diff
    from ..server.commit import find_version

    manifests = []
    for version in (a, b):
        row = find_version(s, caller.org, check_name(name, "dataset"), check_name(version, "version"))
        if row is None:
            raise ApiError(404, f"no dataset {name}@{version} in organization {caller.org!r}")
        root = org_root(_cache(request), caller.org)
        manifests.append(load_manifest(dataset_folder(root, request.app.state.store, json.loads(row.manifest_json))))
    return _page("dataset_diff.html", request, caller, diff=dataset_diff(manifests[0], manifests[1]))


def install(app: Any) -> None:
    """Add the dashboard to the server's app: its routes, and the login redirect for a browser without a session."""

    @app.exception_handler(LoginNeeded)
    async def _login(_request: Request, _exc: LoginNeeded) -> Response:
        return RedirectResponse("/ui/login", status_code=303, headers=SECURITY)

    app.include_router(router)
