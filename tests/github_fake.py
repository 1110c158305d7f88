"""A fake GitHub on real sockets for the GitHub-layer tests.

Two listeners: the API (127.0.0.1) — REST endpoints plus the Twirp results service — and a "blob" host
(127.0.0.2, a different host name as far as any HTTP client is concerned) that stands for the signed storage URLs
GitHub redirects to. Every REST request is checked against GitHub's OpenAPI description and every REST answer is
built from the spec's own examples and checked against its response schema; a problem is recorded in
`violations` (the `fake_github` fixture fails the test when any is left). GraphQL (`POST /graphql`) is not in the
OpenAPI description: tests/fake_graphql.py parses and answers it against GitHub's GraphQL schema instead, and
tests/fake_results.py keeps the results service's artifacts (409 on a name the workflow run already has).

tests/conftest.py loads this module as a plugin (`pytest_plugins`), so every test module gets the `fake_github` and
`gh` fixtures by naming them as arguments; modules import only the plain names (FakeGitHub, TOKEN, RUNTIME).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from jsonschema import Draft7Validator

from . import fake_graphql, fake_results
from . import github_fixtures as gf

TWIRP = "/twirp/github.actions.results.api.v1.ArtifactService/"
# From the proto (actions/toolkit packages/artifact/src/generated/results/api/v1/artifact.ts), JSON field names
# as twirp-ts sends them (useProtoFieldName): int64 as strings, StringValue as plain strings.
TWIRP_SCHEMAS = {
    "CreateArtifact": {
        "type": "object",
        "required": ["workflow_run_backend_id", "workflow_job_run_backend_id", "name", "version"],
        "properties": {
            "workflow_run_backend_id": {"type": "string", "minLength": 1},
            "workflow_job_run_backend_id": {"type": "string", "minLength": 1},
            "name": {"type": "string", "minLength": 1},
            "version": {"type": "integer"},
            "expires_at": {"type": "string"},
            "mime_type": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "FinalizeArtifact": {
        "type": "object",
        "required": ["workflow_run_backend_id", "workflow_job_run_backend_id", "name", "size"],
        "properties": {
            "workflow_run_backend_id": {"type": "string"},
            "workflow_job_run_backend_id": {"type": "string"},
            "name": {"type": "string"},
            "size": {"type": "string", "pattern": "^[0-9]+$"},
            "hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        },
        "additionalProperties": False,
    },
}


@dataclass
class Recorded:
    host: str  # "api" or "blob"
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Fault:
    method: str
    path_re: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int = 1


class FakeGitHub:
    def __init__(self, repo: str = "Codertocat/Hello-World", bot: str = "github-actions[bot]") -> None:
        self.repo = repo
        self.bot = bot
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.runs: list[dict[str, Any]] = []
        self.artifacts: dict[int, list[dict[str, Any]]] = {}
        self.blobs: dict[int, bytes] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.merge_bases: dict[str, str] = {}
        self.user_login: str | None = None  # None: /user answers 403 as it does for GITHUB_TOKEN
        self.viewer_login = bot  # GraphQL's `viewer { login }`: `<app-slug>[bot]` for installation tokens
        self.minimized: set[int] = set()  # ids of comments hidden in the UI (GraphQL `isMinimized`)
        self.uploads: dict[str, dict[str, Any]] = {}  # artifact name -> {"blocks", "data", "finalize"}
        self.twirp_token: str | None = None  # the runtime token twirp calls must carry
        self.results = fake_results.ResultsStore(self)  # the results service's artifacts (CreateArtifact …)
        self.backend_runs: dict[str, int] = {}  # workflow_run_backend_id -> REST run id, for a run's artifacts
        # tokens with read-only permissions, as a fork's pull request job gets: every REST write answers 403
        self.read_only_tokens: set[str] = set()
        # how the storage host answers artifact downloads: None (the blob), "close" (hangs up without answering),
        # "cut" (half the blob, then hangs up) or an HTTP status
        self.blob_fault: str | int | None = None
        self._next_id = 1000
        self.api = self._serve("127.0.0.1", "api")
        self.blob = self._serve("127.0.0.2", "blob")
        self.api_url = f"http://127.0.0.1:{self.api.server_address[1]}"
        self.blob_url = f"http://127.0.0.2:{self.blob.server_address[1]}"

    # --- lifecycle -------------------------------------------------------------------------------------------
    def _serve(self, host: str, kind: str) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # keep test output clean
                pass

            def _any(self) -> None:
                fake._handle(self, kind)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        srv = ThreadingHTTPServer((host, 0), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return srv

    def close(self) -> None:
        for s in (self.api, self.blob):
            s.shutdown()
            s.server_close()

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    # --- state builders (bodies from GitHub's examples, checked against the schemas when served) -------------
    def add_comment(self, issue: int, body: str, login: str | None = None) -> dict[str, Any]:
        c = gf.example("issue-comment")
        cid = self.new_id()
        c.update(id=cid, node_id=f"IC_{cid}", body=body)
        c["url"] = f"{self.api_url}/repos/{self.repo}/issues/comments/{cid}"
        c["html_url"] = f"https://github.com/{self.repo}/pull/{issue}#issuecomment-{cid}"
        c["issue_url"] = f"{self.api_url}/repos/{self.repo}/issues/{issue}"
        c["user"]["login"] = login or self.bot
        c["user"]["type"] = "Bot" if c["user"]["login"].endswith("[bot]") else "User"
        self.comments.setdefault(issue, []).append(c)
        return c

    def add_run(
        self,
        head_sha: str,
        *,
        branch: str = "master",
        conclusion: str = "success",
        head_repo: str | None = None,
        created_at: str = "2024-01-01T00:00:00Z",
        event: str = "push",
        run_id: int | None = None,
    ) -> dict[str, Any]:
        r = gf.example("workflow-run")
        rid = run_id or self.new_id()
        r.update(
            id=rid,
            head_sha=head_sha,
            head_branch=branch,
            conclusion=conclusion,
            event=event,
            status="completed",
            created_at=created_at,
            updated_at=created_at,
            run_started_at=created_at,
        )
        r["html_url"] = f"https://github.com/{self.repo}/actions/runs/{rid}"
        r["repository"]["full_name"] = self.repo
        r["head_repository"]["full_name"] = head_repo or self.repo
        r["pull_requests"] = []
        self.runs.append(r)
        self.artifacts.setdefault(rid, [])
        return r

    def add_artifact(self, run_id: int, name: str, data: bytes, *, expired: bool = False) -> dict[str, Any]:
        a = gf.example("artifact")
        aid = self.new_id()
        a.update(id=aid, node_id=f"A_{aid}", name=name, size_in_bytes=len(data), expired=expired)
        a["url"] = f"{self.api_url}/repos/{self.repo}/actions/artifacts/{aid}"
        a["archive_download_url"] = f"{a['url']}/zip"
        a["workflow_run"]["id"] = run_id
        self.artifacts.setdefault(run_id, []).append(a)
        self.blobs[aid] = data
        return a

    def add_pull(self, number: int, head_sha: str, head_repo: str | None = None) -> dict[str, Any]:
        p = gf.example("pull-request")
        for t in p.get("requested_teams") or []:
            t.setdefault("type", "organization")  # GitHub's own example lacks this required field
        p.update(number=number)
        p["head"]["sha"] = head_sha
        p["base"]["repo"]["full_name"] = self.repo
        p["head"]["repo"]["full_name"] = head_repo or self.repo
        self.pulls[number] = p
        return p

    def fault(
        self,
        method: str,
        path_re: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        if body is None:
            body = {"message": f"fault {status}", "documentation_url": "https://docs.github.com/rest"}
        self.faults.append(Fault(method, path_re, status, headers or {}, body, times))

    def calls(self, method: str | None = None, path_re: str = "", host: str = "api") -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.host == host and (method is None or r.method == method) and re.search(path_re, r.path)
        ]

    # --- request handling ------------------------------------------------------------------------------------
    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        h.send_response(status)
        if raw is None and body is not None:
            h.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, host: str) -> None:
        parts = urlsplit(h.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        rec = Recorded(host, h.command, parts.path, query, {k.lower(): v for k, v in h.headers.items()}, raw)
        with self.lock:
            self.requests.append(rec)
        try:
            if host == "blob":
                return self._blob(h, rec)
            if parts.path.startswith(TWIRP):
                return self._twirp(h, rec)
            if parts.path == "/graphql":  # not in the OpenAPI description: checked by tests/fake_graphql.py
                return self._graphql(h, rec)
            return self._rest(h, rec)
        except Exception as e:  # noqa: BLE001 - a bug in the fake must show up as a violation, not a hang
            self.violations.append(f"fake server error on {h.command} {parts.path}: {type(e).__name__}: {e}")
            self._send(h, 500, {"message": "fake server error"})

    def _rest(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        body = None
        if rec.body:
            try:
                body = json.loads(rec.body)
            except ValueError:
                self.violations.append(f"{rec.method} {rec.path}: body is not JSON")
        problems = gf.validate_request(rec.method, rec.path, rec.query, body)
        if problems:
            self.violations.extend(problems)
            return self._send(h, 400, {"message": "; ".join(problems)})
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            self.violations.append(f"{rec.method} {rec.path}: no bearer token")
        if rec.method != "GET" and auth.removeprefix("Bearer ") in self.read_only_tokens:
            denied = "Resource not accessible by integration"  # GitHub's words for a write the token may not make
            return self._send(h, 403, {"message": denied, "documentation_url": "https://docs.github.com/rest"})
        for f in self.faults:
            if f.times > 0 and f.method == rec.method and re.search(f.path_re, rec.path):
                f.times -= 1
                return self._send(h, f.status, f.body, f.headers)
        status, out, headers = self._route(rec, body)
        # success answers must match the spec; error answers only where the spec documents them (GitHub answers
        # 404 on every endpoint, documented or not)
        documented = not any("is not documented" in p for p in gf.validate_response(rec.method, rec.path, status, out))
        if status < 300 or documented:
            problems = gf.validate_response(rec.method, rec.path, status, out)
            if problems:
                self.violations.extend(problems)
        self._send(h, status, out, headers)

    def _graphql(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        for f in self.faults:
            if f.times > 0 and f.method == rec.method and re.search(f.path_re, rec.path):
                f.times -= 1
                return self._send(h, f.status, f.body, f.headers)
        status, body = fake_graphql.handle(self, rec)
        return self._send(h, status, body)

    def app_token(self, slug: str) -> None:
        """Play a GitHub App's installation token: comments by `<slug>[bot]`, /user answers 403."""
        self.bot = self.viewer_login = f"{slug}[bot]"
        self.user_login = None

    def _page(self, rec: Recorded, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per = int(rec.query.get("per_page", ["30"])[-1])
        page = int(rec.query.get("page", ["1"])[-1])
        last = max(1, -(-len(items) // per))
        links = []
        base = {k: v[-1] for k, v in rec.query.items() if k != "page"}
        if page < last:
            links.append(f'<{self.api_url}{rec.path}?{urlencode({**base, "page": page + 1})}>; rel="next"')
            links.append(f'<{self.api_url}{rec.path}?{urlencode({**base, "page": last})}>; rel="last"')
        return items[(page - 1) * per : page * per], ({"Link": ", ".join(links)} if links else {})

    def _route(self, rec: Recorded, body: Any) -> tuple[int, Any, dict[str, str]]:
        p, m = rec.path, rec.method
        repo = f"/repos/{self.repo}"
        not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        if p == "/user" and m == "GET":
            if self.user_login is None:
                return 403, {"message": "Resource not accessible by integration", "documentation_url": "x"}, {}
            u = gf.example("private-user")
            u["login"] = self.user_login
            return 200, u, {}
        if mt := re.fullmatch(rf"{repo}/issues/(\d+)/comments", p):
            issue = int(mt.group(1))
            if m == "GET":
                items, headers = self._page(rec, self.comments.get(issue, []))
                return 200, items, headers
            if len(body["body"]) > 65536:
                return (
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "IssueComment",
                                "code": "custom",
                                "field": "body",
                                "message": "body is too long (maximum is 65536 characters)",
                            }
                        ],
                        "documentation_url": "x",
                    },
                    {},
                )
            return 201, self.add_comment(issue, body["body"]), {}
        if mt := re.fullmatch(rf"{repo}/issues/comments/(\d+)", p):
            for cs in self.comments.values():
                for c in cs:
                    if c["id"] == int(mt.group(1)):
                        c["body"] = body["body"]
                        return 200, c, {}
            return 404, not_found, {}
        if mt := re.fullmatch(rf"{repo}/actions/workflows/([^/]+)/runs", p):
            runs = [r for r in self.runs if r["head_branch"] == rec.query.get("branch", [r["head_branch"]])[-1]]
            status = rec.query.get("status", [None])[-1]
            if status:
                runs = [r for r in runs if status in (r["status"], r["conclusion"])]
            for key in ("head_sha", "event"):  # exact matches, as GitHub filters them
                if key in rec.query:
                    runs = [r for r in runs if r[key] == rec.query[key][-1]]
            runs.sort(key=lambda r: r["created_at"], reverse=True)
            items, headers = self._page(rec, runs)
            return 200, {"total_count": len(runs), "workflow_runs": items}, headers
        if mt := re.fullmatch(rf"{repo}/actions/runs/(\d+)", p):
            for r in self.runs:
                if r["id"] == int(mt.group(1)):
                    return 200, r, {}
            return 404, not_found, {}
        if mt := re.fullmatch(rf"{repo}/actions/runs/(\d+)/artifacts", p):
            arts = self.artifacts.get(int(mt.group(1)), [])
            name = rec.query.get("name", [None])[-1]
            arts = [a for a in arts if name is None or a["name"] == name]
            items, headers = self._page(rec, arts)
            return 200, {"total_count": len(arts), "artifacts": items}, headers
        if mt := re.fullmatch(rf"{repo}/actions/artifacts/(\d+)/zip", p):
            aid = int(mt.group(1))
            if aid not in self.blobs:
                return 404, not_found, {}
            return 302, None, {"Location": f"{self.blob_url}/artifact-blobs/{aid}?sig=signed-by-fake&se=2099"}
        if mt := re.fullmatch(rf"{repo}/compare/(.+)\.\.\.(.+)", p):
            mb = self.merge_bases.get(f"{mt.group(1)}...{mt.group(2)}")
            if mb is None:
                return 404, not_found, {}
            c = gf.example("commit-comparison")
            c["merge_base_commit"]["sha"] = mb
            return 200, c, {}
        if mt := re.fullmatch(rf"{repo}/pulls/(\d+)", p):
            pr = self.pulls.get(int(mt.group(1)))
            return (200, pr, {}) if pr else (404, not_found, {})
        return 404, not_found, {}

    def _twirp(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        method = rec.path[len(TWIRP) :]
        if self.twirp_token and rec.headers.get("authorization") != f"Bearer {self.twirp_token}":
            return self._send(h, 401, {"code": "unauthenticated", "msg": "bad token"})
        if rec.headers.get("content-type") != "application/json":
            self.violations.append(f"twirp {method}: content-type {rec.headers.get('content-type')}")
        body = json.loads(rec.body or b"{}")
        schema = {**TWIRP_SCHEMAS, **fake_results.SCHEMAS}.get(method)
        if schema is None:
            return self._send(h, 404, {"code": "bad_route", "msg": method})
        errs = [e.message for e in Draft7Validator(schema).iter_errors(body)]
        if errs:
            self.violations.extend(f"twirp {method}: {e}" for e in errs)
            return self._send(h, 400, {"code": "invalid_argument", "msg": "; ".join(errs)})
        for f in self.faults:
            if f.times > 0 and f.method == "POST" and re.search(f.path_re, rec.path):
                f.times -= 1
                return self._send(h, f.status, f.body, f.headers)
        status, answer = self.results.call(method, body)  # tests/fake_results.py
        return self._send(h, status, answer)

    def _blob(self, h: BaseHTTPRequestHandler, rec: Recorded) -> None:
        if "sig" not in rec.query:
            return self._send(h, 403, raw=b"<Error>no signature</Error>")
        if rec.method == "GET" and (mt := re.fullmatch(r"/artifact-blobs/(\d+)", rec.path)):
            data = self.blobs.get(int(mt.group(1)))
            if data is None:
                return self._send(h, 404, raw=b"")
            if self.blob_fault in ("close", "cut"):
                h.close_connection = True
                if self.blob_fault == "cut":
                    h.send_response(200)
                    h.send_header("Content-Length", str(len(data)))
                    h.end_headers()
                    h.wfile.write(data[: len(data) // 2])
                return None
            if self.blob_fault is not None:
                return self._send(h, int(self.blob_fault), raw=b"<Error><Code>InternalError</Code></Error>")
            return self._send(h, 200, headers={"Content-Type": "application/zip"}, raw=data)
        if rec.method == "PUT" and (mt := re.fullmatch(r"/upload/(.+)", rec.path)):
            up = self.uploads.get(mt.group(1))
            if up is None:
                return self._send(h, 404, raw=b"")
            comp = rec.query.get("comp", [None])[-1]
            if comp == "block":
                up["blocks"][rec.query["blockid"][-1]] = rec.body
            elif comp == "blocklist":
                ids = re.findall(r"<Latest>([^<]+)</Latest>", rec.body.decode())
                up["data"] = b"".join(up["blocks"][i] for i in ids)
            else:
                if rec.headers.get("x-ms-blob-type") != "BlockBlob":
                    return self._send(h, 400, raw=b"<Error>x-ms-blob-type missing</Error>")
                up["data"] = rec.body
            return self._send(h, 201, raw=b"")
        return self._send(h, 404, raw=b"")


TOKEN = "ghs_TestTokenDoNotLeak0123456789abcdef"


def runtime_token(scp: str) -> str:
    """An ACTIONS_RUNTIME_TOKEN-shaped JWT (header.claims.signature, not really signed) whose `scp` claim is `scp`."""

    def enc(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'RS256'})}.{enc({'scp': scp})}.sig"


# the runtime token the runner gives a job: its scp claim names the workflow run's and the job's backend ids
RUNTIME = runtime_token("Actions.ExampleScope Actions.Results:ce7f54c7-61c7:ca395085-040a")


@pytest.fixture
def fake_github():
    """A running FakeGitHub; the test fails if the client made a request GitHub's API description rejects."""
    gf.openapi()  # skip (or fail in CI) before starting servers when the fixtures are missing
    fake = FakeGitHub()
    try:
        yield fake
    finally:
        fake.close()
    assert not fake.violations, "requests or answers that break GitHub's API description:\n" + "\n".join(
        fake.violations
    )


@pytest.fixture
def gh(fake_github):
    """A GitHubClient pointed at the fake, whose sleeps are recorded instead of slept."""
    from verifily_action.github.client import GitHubClient

    sleeps: list[float] = []
    client = GitHubClient(TOKEN, fake_github.api_url, backoff=0.01, sleep=sleeps.append)
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client
