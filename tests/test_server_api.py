"""The Verifily server over real HTTP, against SQLite and against a real PostgreSQL (tests/pg_server.py): tokens and
scopes, organizations, dataset push and pull through the CLI, what the server refuses (names, paths, bytes that do
not match their hash, rows that do not match the manifest), and `name@version` pulled through the cache when
VERIFILY_SERVER is set. One server per database for the module (tests/server_proc.py)."""

from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path

import pytest
import requests

from verifily_action.datasets.manifest import load_manifest
from verifily_action.hashing import sha256_bytes
from verifily_action.remote.client import Client
from verifily_action.remote.pull import pull
from verifily_action.server.database import head_revision

from .builders import cls_rows, sealed_run, write_config, write_dataset
from .server_proc import Server, init_on

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    srv = init_on(request, tmp_path_factory, "api").start()
    yield srv
    srv.stop()


def _token(srv: Server, org: str, scope: str, admin: str | None = None) -> str:
    r = requests.post(
        srv.url + "/api/v1/tokens",
        json={"org": org, "scope": scope},
        headers={"Authorization": f"Bearer {admin or srv.admin_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def tokens(server):
    return {f"{org}_{scope}": _token(server, org, scope) for org in ("acme", "globex") for scope in ("read", "write")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_dataset(root, "reviews", "v1", {"train": cls_rows(40), "eval": cls_rows(12, seed=1)})
    write_dataset(root, "reviews", "v2", {"train": cls_rows(40), "eval": cls_rows(16, seed=2)})  # train shared
    return root


def _pushed(srv: Server, token: str, data_root: Path, version: str) -> None:
    """reviews@<version> on the server (pushed here unless an earlier test did), so a test can run alone."""
    from verifily_action.remote.push import push

    push(load_manifest(data_root / "reviews" / version / "manifest.yaml"), Client(srv.url, token))


def _get(srv: Server, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(srv.url + path, headers=headers, timeout=30)


def _env(srv: Server, token: str, tmp_path: Path) -> dict[str, str]:
    return {"VERIFILY_SERVER": srv.url, "VERIFILY_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_only_health_answers_without_a_token(server):
    from verifily_action.server.app import create_app

    assert _get(server, "/health", None).json() == {"ok": True}
    app = create_app(f"sqlite:///{server.store.parent / 'routes-only.db'}", server.store.parent / "routes-only")
    routes = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]  # routers included
    assert len(routes) >= 12
    for method, path in routes:
        if path == "/health":
            continue
        url = server.url + re.sub(r"\{\w+\}", "0" * 64, path)  # every path parameter: a well-formed hash
        for headers in ({}, {"Authorization": "Bearer vf_0123456789abcdef_wrong"}):
            r = requests.request(method, url, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.status_code)


def test_push_then_pull_round_trip_through_the_cli(cli, server, tokens, data_root, tmp_path):
    env = _env(server, tokens["acme_write"], tmp_path)
    first = cli("dataset", "push", "reviews@v1", "--to", server.url, "--datasets-root", str(data_root), env=env)
    assert first.returncode == 0, first.stderr
    assert "reviews@v1 pushed" in first.stdout and "uploaded 2 file(s), skipped 0" in first.stdout
    again = cli("dataset", "push", "reviews@v2", "--datasets-root", str(data_root), env=env)
    assert "uploaded 1 file(s), skipped 1" in again.stdout, again.stdout + again.stderr  # the shared train file
    same = cli("dataset", "push", "reviews@v1", "--datasets-root", str(data_root), env=env)
    assert same.returncode == 0 and "already on the server" in same.stdout

    listed = _get(server, "/api/v1/datasets", tokens["acme_read"]).json()
    assert [v["ref"] for v in listed["versions"]] == ["reviews@v1", "reviews@v2"]

    dest = tmp_path / "pulled"
    env_read = _env(server, tokens["acme_read"], tmp_path)
    pulled = cli("dataset", "pull", "reviews@v2", "--from", server.url, "--datasets-root", str(dest), env=env_read)
    assert pulled.returncode == 0, pulled.stderr
    original = load_manifest(data_root / "reviews" / "v2" / "manifest.yaml")
    copy = load_manifest(dest / "reviews" / "v2")
    assert copy.dataset_hash() == original.dataset_hash()
    for name in ("train.jsonl", "eval.jsonl"):
        assert (dest / "reviews" / "v2" / name).read_bytes() == (data_root / "reviews" / "v2" / name).read_bytes()


def test_a_read_token_cannot_push_and_orgs_do_not_see_each_other(cli, server, tokens, data_root, tmp_path):
    write_dataset(data_root, "secret", "v1", {"train": cls_rows(8, seed=7)})
    env = _env(server, tokens["acme_read"], tmp_path)
    refused = cli("dataset", "push", "secret@v1", "--datasets-root", str(data_root), env=env)
    assert refused.returncode == 2 and "403" in refused.stderr and "needs a write token" in refused.stderr
    assert "Traceback" not in refused.stderr

    pushed = cli(
        "dataset",
        "push",
        "secret@v1",
        "--datasets-root",
        str(data_root),
        env=_env(server, tokens["acme_write"], tmp_path),
    )
    assert pushed.returncode == 0, pushed.stderr
    sha = load_manifest(data_root / "secret" / "v1" / "manifest.yaml").splits["train"][0].sha256
    assert _get(server, f"/api/v1/blobs/{sha}", tokens["acme_read"]).status_code == 200
    for token in (tokens["globex_read"], tokens["globex_write"]):
        assert _get(server, "/api/v1/datasets", token).json()["versions"] == []
        assert _get(server, "/api/v1/datasets/secret/v1", token).status_code == 404
        assert _get(server, f"/api/v1/blobs/{sha}", token).status_code == 404
    # globex is told it lacks the file (acme holding it is not revealed), and must upload its own bytes
    r = requests.post(
        server.url + "/api/v1/blobs/missing",
        json={"hashes": [sha]},
        headers={"Authorization": f"Bearer {tokens['globex_write']}"},
        timeout=30,
    )
    assert r.json() == {"missing": [sha]}
    # an admin of acme makes tokens for acme only
    acme_admin = _token(server, "acme", "admin")
    r = requests.post(
        server.url + "/api/v1/tokens",
        json={"org": "globex", "scope": "read"},
        headers={"Authorization": f"Bearer {acme_admin}"},
        timeout=30,
    )
    assert r.status_code == 403


def test_token_create_login_and_revoke(cli, server, tmp_path):
    admin_env = _env(server, server.admin_token, tmp_path)
    made = cli("token", "create", "--org", "initech", "--scope", "read", env=admin_env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("vf_") and _get(server, "/api/v1/whoami", token).json()["org"] == "initech"

    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    login = cli("login", server.url, "--token", token, env=env)
    assert login.returncode == 0, login.stderr
    saved = tmp_path / "config" / "verifily" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["tokens"][server.url] == token

    token_id = token.split("_")[1]
    revoked = cli("token", "revoke", token_id, env=admin_env)
    assert revoked.returncode == 0, revoked.stderr
    assert _get(server, "/api/v1/whoami", token).status_code == 401
    after = cli("dataset", "pull", "reviews@v1", "--datasets-root", str(tmp_path / "d"), env=env)
    assert after.returncode == 2 and "401" in after.stderr

    bad = cli("token", "create", "--org", "../x", "--scope", "read", env=admin_env)
    assert bad.returncode == 2 and "not a valid name" in bad.stderr


def _put_manifest(srv: Server, token: str, name: str, version: str, manifest: dict) -> requests.Response:
    return requests.put(
        f"{srv.url}/api/v1/datasets/{name}/{version}",
        json={"manifest": manifest},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _upload(srv: Server, token: str, sha: str, data: bytes) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    r = requests.put(f"{srv.url}/api/v1/uploads/{sha}", params={"offset": 0}, data=data, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return requests.post(f"{srv.url}/api/v1/uploads/{sha}/complete", headers=headers, timeout=30)


def _manifest(name: str, path: str, sha: str, rows: int) -> dict:
    return {
        "schema_version": 1,
        "name": name,
        "version": "v1",
        "task": "classification",
        "tag_keys": ["source"],
        "splits": {"train": {"files": [{"path": path, "sha256": sha, "rows": rows}]}},
    }


def test_bytes_that_do_not_match_their_hash_are_refused_and_not_stored(server, tokens):
    token = tokens["acme_write"]
    claimed = sha256_bytes(b"what the manifest promised\n")
    r = _upload(server, token, claimed, b'{"id": "x", "text": "something else", "label": "a"}\n')
    assert r.status_code == 422 and "hash to" in r.json()["error"]
    assert not list(server.store.rglob(claimed))  # neither a blob nor a staged upload is left
    assert _get(server, f"/api/v1/blobs/{claimed}", tokens["acme_read"]).status_code == 404

    rows = b'{"id": "a", "text": "t", "label": "x", "tags": {"source": "human"}}\n'
    sha = sha256_bytes(rows)
    assert _upload(server, token, sha, rows).status_code == 200
    wrong_rows = _put_manifest(server, token, "counted", "v1", _manifest("counted", "train.jsonl", sha, 2))
    assert wrong_rows.status_code == 422 and "1 rows, the manifest says 2" in json.dumps(wrong_rows.json())
    unknown = _put_manifest(server, token, "counted", "v1", _manifest("counted", "t.jsonl", "ab" * 32, 1))
    assert unknown.status_code == 422 and "no uploaded file" in json.dumps(unknown.json())
    listed = [v["ref"] for v in _get(server, "/api/v1/datasets", token).json()["versions"]]
    assert "counted@v1" not in listed  # files uploaded, the manifest refused: no version


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("ok-name", "../outside.jsonl"),
        ("ok-name", "/etc/passwd"),
        ("ok-name", "a\x00b.jsonl"),
        ("bad\x00name", "t.jsonl"),
    ],
)
def test_names_and_paths_that_leave_the_dataset_are_refused(server, tokens, name, path):
    rows = b'{"id": "a", "text": "t", "label": "x", "tags": {"source": "human"}}\n'
    r = _put_manifest(server, tokens["acme_write"], "ok-name", "v1", _manifest(name, path, sha256_bytes(rows), 1))
    assert r.status_code == 422, r.text
    for url_name in ("..", "..%2F..%2Fetc", "%00x", ".hidden"):
        r = _put_manifest(server, tokens["acme_write"], url_name, "v1", _manifest("ok-name", "t.jsonl", "0" * 64, 1))
        assert r.status_code in (404, 422), (url_name, r.status_code)
    names = [v["name"] for v in _get(server, "/api/v1/datasets", tokens["acme_read"]).json()["versions"]]
    assert "ok-name" not in names


def test_a_version_is_immutable(server, tokens, data_root):
    _pushed(server, tokens["acme_write"], data_root, "v1")
    m = load_manifest(data_root / "reviews" / "v1" / "manifest.yaml")
    changed = json.loads(json.dumps(m.data))
    changed["splits"]["eval"]["files"][0]["rows"] = 11
    r = _put_manifest(server, tokens["acme_write"], "reviews", "v1", changed)
    assert r.status_code == 409 and "versions never change" in r.json()["error"]


def test_name_at_version_is_pulled_through_the_cache_from_verifily_server_or_the_config(
    cli, server, tokens, data_root, tmp_path, monkeypatch
):
    for version in ("v1", "v2"):
        _pushed(server, tokens["acme_write"], data_root, version)
    monkeypatch.setenv("VERIFILY_SERVER", server.url)
    monkeypatch.setenv("VERIFILY_TOKEN", tokens["acme_read"])
    from verifily_action.datasets import resolve
    from verifily_action.remote.pull import cache_folder

    m = resolve("reviews@v1", tmp_path / "no-local-datasets")
    expected = load_manifest(data_root / "reviews" / "v1" / "manifest.yaml").dataset_hash()
    assert m.dir == (cache_folder() / expected).resolve() and m.dataset_hash() == expected
    # a cached file changed on disk is caught on the next use
    (m.dir / "eval.jsonl").write_bytes(b"{}\n")
    info = cli("dataset", "info", "reviews@v1")
    assert info.returncode == 2 and "hashes to" in info.stderr, info.stdout + info.stderr
    missing = cli("dataset", "info", "nothing@v9")
    assert missing.returncode == 2 and "404" in missing.stderr

    # train resolves its dataset the same way, here from the config's `server:` (v2: not cached yet)
    monkeypatch.delenv("VERIFILY_SERVER")
    config = write_config(
        tmp_path / "train.yaml", task="classification", model="all-MiniLM-L6-v2", dataset="reviews@v2",
        datasets_root=str(tmp_path / "no-local-datasets"), server=server.url, training={"epochs": 1, "batch_size": 8},
    )  # fmt: skip
    plan = cli("train", "--config", str(config), "--dry-run", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    v2 = load_manifest(data_root / "reviews" / "v2" / "manifest.yaml").dataset_hash()
    got = json.loads(plan.stdout)
    assert Path(got["manifest"]).parent == (cache_folder() / v2).resolve() and got["rows"] == 40
    # eval and attribute read the run's `server:` too: with the pulled copy gone, eval pulls it again
    trained = cli("train", "--config", str(config), "--output-dir", str(tmp_path / "runs"))
    assert trained.returncode == 0, trained.stderr
    shutil.rmtree(cache_folder() / v2)
    evaluated = cli("eval", "--run", trained.stdout.strip(), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["dataset"]["hash"] == v2 and (cache_folder() / v2).is_dir()
    bad = write_config(tmp_path / "bad.yaml", task="classification", model="m", dataset="d@v1", server="ftp://x")
    refused = cli("validate", str(bad))
    assert refused.returncode == 2 and "$.server" in refused.stderr


def test_a_push_killed_mid_upload_is_not_visible_and_resumes(server, tokens, tmp_path):
    """A second server process on the module's database and store is SIGKILLed after the third chunk of a file is
    acknowledged; the version is not listed; a push to a restarted server sends only the rest and completes."""
    from verifily_action.errors import VerifilyError
    from verifily_action.remote.push import push

    write_dataset(tmp_path, "big", "v1", {"train": cls_rows(2000, seed=3)})
    m = load_manifest(tmp_path / "big" / "v1" / "manifest.yaml")
    size = m.file_path(m.splits["train"][0]).stat().st_size
    chunk = 16 * 1024
    assert size > 6 * chunk
    doomed = Server(server.db, server.store, server.admin_token).start()
    acked: list[int] = []

    def crash_after_three(_sha: str, offset: int) -> None:
        acked.append(offset)
        if len(acked) == 3:
            doomed.kill()

    with pytest.raises(VerifilyError, match="cannot reach the server"):
        push(m, Client(doomed.url, tokens["acme_write"]), chunk_bytes=chunk, on_chunk=crash_after_three)
    assert acked == [chunk, 2 * chunk, 3 * chunk]
    listed = [v["ref"] for v in _get(server, "/api/v1/datasets", tokens["acme_read"]).json()["versions"]]
    assert "big@v1" not in listed

    restarted = Server(server.db, server.store, server.admin_token).start()
    try:
        sent: list[int] = []
        res = push(
            m, Client(restarted.url, tokens["acme_write"]), chunk_bytes=chunk, on_chunk=lambda _s, o: sent.append(o)
        )
        assert res.created and res.resumed_bytes == 3 * chunk and sent[0] == 4 * chunk and sent[-1] == size
        out, fetched = pull(Client(restarted.url, tokens["acme_read"]), "big", "v1", tmp_path / "copy" / "big" / "v1")
        assert fetched and out.dataset_hash() == m.dataset_hash()
    finally:
        restarted.stop()


def test_the_rate_limit_answers_429_per_token(server, tokens):
    limited = Server(server.db, server.store, server.admin_token).start("--rate-limit", "5")
    try:
        codes = [_get(limited, "/api/v1/whoami", tokens["acme_read"]).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        r = _get(limited, "/api/v1/whoami", tokens["acme_read"])
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert _get(limited, "/api/v1/whoami", tokens["acme_write"]).status_code == 200  # another token: its own budget
    finally:
        limited.stop()


def test_the_server_refuses_a_database_that_init_has_not_made(cli, postgres, tmp_path):
    store = tmp_path / "store"
    sqlite = cli("server", "--store", str(store))
    assert sqlite.returncode == 2 and "does not exist" in sqlite.stderr and "verifily server init" in sqlite.stderr
    assert not store.exists()  # nothing was created
    empty = postgres.create_database("never_initialized")
    pg = cli("server", "--db", empty, "--store", str(store))
    assert pg.returncode == 2 and "is empty" in pg.stderr and "Traceback" not in pg.stderr
    init = cli("server", "init", "--db", empty, "--store", str(store))
    assert init.returncode == 0 and f"created (revision {head_revision()})" in init.stdout, init.stdout
    assert "admin token" in init.stdout
    again = cli("server", "init", "--db", empty, "--store", str(store))
    assert "up to date" in again.stdout and "admin token" not in again.stdout


def test_init_migrates_a_database_made_by_an_older_version(cli, postgres, tmp_path):
    """A database at the first revision (datasets only) is refused by the server, then brought to the newest
    revision (the run store's tables) by `server init`, keeping its tokens."""
    from sqlalchemy import inspect

    from verifily_action.server.database import make_engine, migrate

    old = postgres.create_database("made_by_v0001")
    engine = make_engine(old)
    try:
        assert migrate(engine, "v0001") == (None, "v0001")
        assert "runs" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    refused = cli("server", "--db", old, "--store", str(tmp_path / "store"))
    assert refused.returncode == 2 and "is at revision v0001" in refused.stderr
    done = cli("server", "init", "--db", old, "--store", str(tmp_path / "store"))
    assert done.returncode == 0 and f"migrated (revision {head_revision()})" in done.stdout, done.stdout
    engine = make_engine(old)
    try:
        assert {"runs", "run_files", "model_versions", "model_stages"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _run_files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_runs_are_pushed_verified_and_pulled_by_version_and_stage(cli, server, tokens, tmp_path):
    first, second = sealed_run(tmp_path / "a", "run"), sealed_run(tmp_path / "b", "run")  # two roots, two chains
    env = _env(server, tokens["acme_write"], tmp_path)
    pushed = cli("push", "--run", str(first), "--tag", "sentiment@v1", "--stage", "production", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert "sentiment@v1 ->" in pushed.stdout and "sentiment@production ->" in pushed.stdout
    out = tmp_path / "pulled-1"
    got = cli("pull", "sentiment@production", "--out", str(out), env=_env(server, tokens["acme_read"], tmp_path))
    assert got.returncode == 0 and "verified" in got.stdout, got.stderr
    assert _run_files(out) == _run_files(first)

    assert cli("push", "--run", str(second), "--tag", "sentiment@v2", "--stage", "production", env=env).returncode == 0
    moved = cli("pull", "sentiment@production", "--out", str(tmp_path / "pulled-2"), env=env)
    assert moved.returncode == 0 and _run_files(tmp_path / "pulled-2") == _run_files(second)  # the stage moved
    fixed = cli("push", "--run", str(second), "--tag", "sentiment@v1", env=env)
    assert fixed.returncode == 2 and "versions never change" in fixed.stderr
    v1 = cli("pull", "sentiment@v1", "--out", str(tmp_path / "pulled-3"), env=env)
    assert v1.returncode == 0 and _run_files(tmp_path / "pulled-3") == _run_files(first)

    read_only = cli("push", "--run", str(first), env=_env(server, tokens["acme_read"], tmp_path))
    assert read_only.returncode == 2 and "needs a write token" in read_only.stderr
    other_org = cli(
        "pull", "sentiment@v1", "--out", str(tmp_path / "x"), env=_env(server, tokens["globex_read"], tmp_path)
    )
    assert other_org.returncode == 2 and "404" in other_org.stderr and not (tmp_path / "x").exists()


def test_a_tampered_run_is_refused_and_nothing_is_recorded(cli, server, tokens, tmp_path):
    run = sealed_run(tmp_path, "run")
    meta = json.loads((run / "run_meta.json").read_text())
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"other weights")
    env = _env(server, tokens["acme_write"], tmp_path)
    client_side = cli("push", "--run", str(run), "--tag", "tampered@v1", env=env)
    assert client_side.returncode == 2 and "hash chain does not hold" in client_side.stderr
    # past the client's own check: the server rebuilds the folder from the uploaded bytes and recomputes the chain
    token = tokens["acme_write"]
    files = {}
    for rel, data in _run_files(run).items():
        sha = sha256_bytes(data)
        if _upload(server, token, sha, data).status_code not in (200,):
            raise AssertionError(rel)
        files[rel] = sha
    r = requests.put(
        f"{server.url}/api/v1/runs/{meta['root_hash']}",
        json={"files": files, "model": "tampered", "version": "v1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 422 and "hash chain does not hold" in r.json()["error"], r.text
    assert "adapter/adapter_model.safetensors" in json.dumps(r.json()["problems"])
    assert _get(server, f"/api/v1/runs/{meta['root_hash']}", tokens["acme_read"]).status_code == 404
    assert _get(server, "/api/v1/models/tampered/v1", tokens["acme_read"]).status_code == 404
