"""deploy/, the deployment files (Kubernetes manifests, systemd units), checked without a cluster or a systemd host:
every manifest deserializes into the official Kubernetes models (PyPI `kubernetes`) and round-trips to itself (the
deserializer drops a key it does not know, so a misspelled field shows up as a difference), the runner requests a
GPU and reads its token from a Secret, every `$(VAR)` a container's args use is defined, every `verifily` command
line in the manifests, the units and docs/managed-mode.md parses with the real CLI's own command objects, and
`systemd-analyze verify` accepts the units."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from verifily_action import __version__

from .debian import apt_install
from .paths import REPO

pytestmark = pytest.mark.unit

K8S = REPO / "deploy" / "kubernetes"
SYSTEMD = REPO / "deploy" / "systemd"
DOC = REPO / "docs" / "managed-mode.md"
IMAGE = "ghcr.io/verifily/verifily-train"
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
}
MIN_GRACE_SECONDS = 300  # stop a training child at a checkpoint, upload it, release the job


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _documents() -> list[tuple[str, dict]]:
    out = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            out.append((f"{path.relative_to(REPO)} {doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = _documents()


def _object(kind: str, name: str) -> dict:
    return next(doc for _, doc in DOCS if doc["kind"] == kind and doc["metadata"]["name"] == name)


def _differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: {'dropped' if k not in b else 'added'}" for k in sorted(set(a) ^ set(b), key=str)]
        return out + [d for k in sorted(set(a) & set(b), key=str) for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} became {b!r}"]


def model_problems(doc: dict) -> list[str]:
    """Why the Kubernetes models refuse `doc`: a wrong type, a missing required field, or a key they do not know
    (dropped on the way through the model, so the round trip differs)."""
    from kubernetes.client import ApiClient

    model = MODELS.get((doc.get("apiVersion"), doc.get("kind")))
    if model is None:
        return [f"no model for apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r}"]
    api = ApiClient()
    try:
        obj = api.deserialize(json.dumps(doc), model, None)
    except Exception as exc:  # pydantic's ValidationError, ValueError: the model refuses it
        return [f"{model}: {exc}"]
    return _differences(doc, api.sanitize_for_serialization(obj))


@pytest.mark.parametrize("where, doc", DOCS, ids=[w for w, _ in DOCS])
def test_every_manifest_is_a_kubernetes_object(where, doc):
    assert model_problems(doc) == [], where


def test_the_check_refuses_broken_documents():
    runner = _object("Deployment", "verifily-runner")
    misspelled = json.loads(json.dumps(runner))
    pod = misspelled["spec"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
    assert model_problems(misspelled) == [".spec.template.spec.terminationGracePeriodSecond: dropped"]
    wrong_type = json.loads(json.dumps(runner))
    wrong_type["spec"]["replicas"] = "two"
    assert "replicas" in model_problems(wrong_type)[0]
    no_selector = json.loads(json.dumps(runner))
    del no_selector["spec"]["selector"]
    assert "selector" in model_problems(no_selector)[0]
    assert model_problems({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})  # not a kind we ship


def test_the_kustomizations_cover_every_manifest_once():
    named: list[Path] = []
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        assert spec["kind"] == "Kustomization", kustomization
        for resource in spec["resources"]:
            path = kustomization.parent / resource
            assert path.is_file() or (path / "kustomization.yaml").is_file(), (kustomization, resource)
            named += [path] if path.is_file() else []
    assert sorted(named) == _manifest_files()
    spaces = {yaml.safe_load(k.read_text(encoding="utf-8"))["namespace"] for k in K8S.rglob("kustomization.yaml")}
    assert spaces == {_object("Namespace", "verifily")["metadata"]["name"]}  # each part applies on its own too
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert {"server", "runner"} <= set(top["resources"])
    keys = [(d["kind"], d["metadata"]["name"]) for _, d in DOCS]
    assert len(keys) == len(set(keys))


def _pod(kind: str, name: str) -> dict:
    return _object(kind, name)["spec"]["template"]["spec"]


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _env(container: dict) -> dict[str, str]:
    """The container's variables, a Secret's value as `<secret NAME KEY>`."""
    out = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        out[var["name"]] = f"<secret {ref['name']} {ref['key']}>" if ref else var["value"]
    return out


def test_the_runner_deployment_requests_a_gpu_and_reads_its_token_from_a_secret():
    pod = _pod("Deployment", "verifily-runner")
    (runner,) = pod["containers"]
    assert runner["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert runner["image"].startswith(IMAGE + ":") and "cuda" in runner["image"].rsplit(":", 1)[1]
    assert _env(runner)["VERIFILY_RUNNER_TOKEN"] == "<secret verifily-runner token>"
    assert runner["args"][0] == "runner" and "--token" not in runner["args"] and "--labels" in runner["args"]
    assert pod["terminationGracePeriodSeconds"] >= MIN_GRACE_SECONDS
    work = runner["args"][runner["args"].index("--work-dir") + 1]
    (mount,) = [m for m in runner["volumeMounts"] if m["mountPath"] == work]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mount["name"])
    server = _object("Service", "verifily-server")["spec"]["ports"][0]["port"]
    assert runner["args"][runner["args"].index("--server") + 1] == f"http://verifily-server:{server}"
    assert _object("Deployment", "verifily-runner")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_the_server_migrates_first_and_keeps_its_blobs_and_database_on_volumes():
    pod = _pod("Deployment", "verifily-server")
    (init,), (server,) = pod["initContainers"], pod["containers"]
    assert init["args"][:2] == ["server", "init"] and server["args"][0] == "server"
    postgres = _object("Service", "verifily-postgres")["spec"]["ports"][0]["port"]
    db = f"postgresql://verifily:$(POSTGRES_PASSWORD)@verifily-postgres:{postgres}/verifily"
    (pg,) = _pod("StatefulSet", "verifily-postgres")["containers"]
    for c in (init, server):
        assert c["args"][c["args"].index("--db") + 1] == db
        assert _env(c)["POSTGRES_PASSWORD"] == _env(pg)["POSTGRES_PASSWORD"] == "<secret verifily-postgres password>"
        store = c["args"][c["args"].index("--store") + 1]
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == store]
        claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]["claimName"]
        assert _object("PersistentVolumeClaim", claim)
    assert _object("Deployment", "verifily-server")["spec"]["strategy"]["type"] == "Recreate"
    port = server["args"][server["args"].index("--port") + 1]
    assert [p["containerPort"] for p in server["ports"]] == [int(port)]
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert _env(pg)["PGDATA"].startswith(pg["volumeMounts"][0]["mountPath"] + "/")


@pytest.mark.parametrize("where, doc", DOCS, ids=[w for w, _ in DOCS])
def test_every_variable_an_argument_uses_is_defined(where, doc):
    """The kubelet leaves an undefined `$(VAR)` as it is, so a typo would reach the program as text."""
    pod = doc.get("spec", {}).get("template", {}).get("spec")
    for c in _containers(pod) if pod else []:
        used = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(c.get("args", []) + c.get("command", []))))
        assert used <= set(_env(c)), (where, c["name"], used - set(_env(c)))


def test_the_docs_self_host_overlay_replaces_the_runners_server():
    """docs/managed-mode.md's overlay for a customer's cluster: its JSON patch's path names the `--server` value."""
    (overlay,) = [
        yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), re.S) if "patches" in b
    ]
    assert overlay["resources"][0].endswith("//deploy/kubernetes/runner?ref=v" + __version__)
    pinned = re.findall(r"(?:verifily-train@|\?ref=)v([\w.]+)", DOC.read_text("utf-8"))
    assert len(pinned) >= 2 and set(pinned) == {__version__}  # the release tag the docs pin is this version
    ((patch,),) = [yaml.safe_load(p["patch"]) for p in overlay["patches"]]
    node: Any = _object(overlay["patches"][0]["target"]["kind"], overlay["patches"][0]["target"]["name"])
    *parents, last = patch["path"].strip("/").split("/")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    assert patch["op"] == "replace" and node[int(last) - 1] == "--server"


def _unit(path: Path) -> list[tuple[str, str]]:
    """A unit file's (key, value) pairs in order (keys repeat, so not a dict); comments and sections left out."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _env_file(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


UNITS = sorted(SYSTEMD.glob("*.service"))


def _unit_env(path: Path) -> dict[str, str]:
    """What the service sees: Environment= lines, then its EnvironmentFile= (the example beside the unit)."""
    env = {}
    for key, value in _unit(path):
        if key == "Environment":
            env.update([value.split("=", 1)])
        elif key == "EnvironmentFile":
            env.update(_env_file(SYSTEMD / (Path(value).stem + ".env.example")))
    return env


def test_the_runner_unit_stops_at_a_checkpoint_and_restarts():
    unit = dict(_unit(SYSTEMD / "verifily-runner.service"))
    assert unit["User"] and unit["EnvironmentFile"].startswith("/etc/")
    assert unit["Restart"] == "always" and unit["KillSignal"] == "SIGTERM"
    assert unit["KillMode"] == "mixed"  # SIGTERM to the runner only: it stops its training child itself
    grace = _pod("Deployment", "verifily-runner")["terminationGracePeriodSeconds"]
    assert int(unit["TimeoutStopSec"]) == grace >= MIN_GRACE_SECONDS
    assert "--token" not in unit["ExecStart"]
    assert _unit_env(SYSTEMD / "verifily-runner.service")["VERIFILY_RUNNER_TOKEN"].startswith("vf_")


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_variable_a_unit_uses_is_defined(unit):
    lines = " ".join(v for k, v in _unit(unit) if k.startswith("Exec"))
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lines))
    assert used and used <= set(_unit_env(unit)), used - set(_unit_env(unit))


def _expand(pattern: str, text: str, env: dict[str, str]) -> str:
    """`text` with each variable reference (`pattern`'s group 1 names it) replaced by its value, as the kubelet or
    systemd would."""
    return re.sub(pattern, lambda m: env[m[1]], text)


def _command_lines() -> list[tuple[str, list[str], dict[str, str]]]:
    """(where, the words after `verifily`, the environment it runs with) for every verifily command line shipped:
    the manifests' containers of the project's image, the units' Exec lines, docs/managed-mode.md's shell lines."""
    out = []
    for where, doc in DOCS:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        for c in _containers(pod) if pod else []:
            if c["image"].startswith(IMAGE + ":"):
                env = _env(c)
                args = [_expand(r"\$\((\w+)\)", a, env) for a in c["args"]]
                out.append((f"{where} {c['name']}", args, env))
    for unit in UNITS:
        env = _unit_env(unit)
        for key, value in _unit(unit):
            if key.startswith("Exec"):
                words = shlex.split(_expand(r"\$\{(\w+)\}", value, env))
                assert words[0].endswith("/verifily"), (unit.name, key)
                out.append((f"{unit.name} {key}", words[1:], env))
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            cut = next((i for i, w in enumerate(words) if w in ("|", "&&", ";", ">", "2>")), len(words))
            image = next((i for i, w in enumerate(words) if w.startswith(IMAGE + ":")), None)
            start = 1 if words[:1] == ["verifily"] else (image + 1 if words[:2] == ["docker", "run"] else None)
            if start is not None:
                out.append((f"docs/managed-mode.md: {line.strip()[:60]}", words[start:cut], {}))
    return out


def cli_problem(words: list[str]) -> str | None:
    """Why `verifily WORDS` would not parse (an unknown command or option, a missing or ill-typed value), found with
    the CLI's own command objects as Click resolves them; None when it parses."""
    import typer

    from verifily_action.cli import app

    cmd, name, rest = typer.main.get_command(app), "verifily", list(words)
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        if rest[0] not in cmd.commands:
            return f"`{name}` has no command {rest[0]!r}"
        name, cmd, rest = rest[0], cmd.commands[rest[0]], rest[1:]
    try:
        ctx = cmd.make_context(name, rest)
    except Exception as exc:  # Click's usage errors (its copy inside Typer), raised for what a user would be told
        return f"{name}: {getattr(exc, 'format_message', exc.__str__)()}"
    left = [*ctx.args, *getattr(ctx, "_protected_args", [])]
    return f"{name}: left over {left}" if left else None


LINES = _command_lines()


@pytest.mark.parametrize("where, words, env", LINES, ids=[w for w, _, _ in LINES])
def test_every_verifily_command_line_parses_with_the_real_cli(where, words, env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli_problem(words) is None, (where, words)


def test_the_parse_check_refuses_what_the_cli_would():
    assert "no command" in cli_problem(["sever", "--db", "x"])
    assert "--no-such" in cli_problem(["server", "--db", "x", "--no-such"])
    assert "port" in cli_problem(["server", "--port", "eighty"]).lower()
    assert "scope" in cli_problem(["token", "create", "--org", "acme"])
    assert "left over" in cli_problem(["server", "--db", "x", "stray"])
    assert cli_problem(["server", "--managed", "--port", "8080"]) is None
    assert {w[0] for _, w, _ in LINES} >= {"server", "runner"}
    from_doc = [w for where, w, _ in LINES if where.startswith("docs/")]
    assert sum(w[:1] in (["submit"], ["jobs"], ["usage"]) for w in from_doc) >= 3
    assert ["runner"] in [w[:1] for w in from_doc]


def _systemd_analyze() -> str | None:
    if shutil.which("systemd-analyze") is None:
        with contextlib.suppress(subprocess.CalledProcessError):  # no package index reachable
            apt_install("systemd")
    return shutil.which("systemd-analyze")


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    """In a root of their own (`--root`: systemd looks units up there): systemd's unit folder copied in, the units
    beside them, and the binary each Exec line names as a stub."""
    tool = _systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is missing and Debian's systemd package cannot be installed here (not root)")
    paths = subprocess.run([tool, "unit-paths"], capture_output=True, text=True, check=True).stdout.split()
    units = next(Path(p) for p in paths if (Path(p) / "sysinit.target").is_file())
    folder = tmp_path / units.relative_to(units.anchor)
    shutil.copytree(units, folder, symlinks=True)
    ours = [Path(shutil.copy(unit, folder)) for unit in UNITS]

    def verify(*files: Path) -> subprocess.CompletedProcess:
        cmd = [tool, "verify", "--man=no", f"--root={tmp_path}", *map(str, files)]
        return subprocess.run(cmd, capture_output=True, text=True)

    missing = verify(*ours)
    assert missing.returncode != 0 and "is not executable" in missing.stderr  # the binary is checked, in the root
    for unit in UNITS:
        for key, value in _unit(unit):
            if key.startswith("Exec"):
                stub = tmp_path / Path(value.split()[0]).relative_to("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    done = verify(*ours)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    broken = folder / "broken.service"
    broken.write_text(UNITS[0].read_text(encoding="utf-8").replace("Restart=always", "Restart=sometimes"))
    assert "sometimes" in verify(broken).stderr  # a bad value is reported (on stderr only: the code stays 0)
