"""The container images, built and run for real: the `cpu` target as the plain CLI and as the GitHub Action, and the
`comment` target (no ML stack) as the comment action's `workflow_run` job.

A session fixture starts a private Docker engine (tests/container/start_dockerd.sh: no bridge, no iptables, so no
private-range networks; builds and containers use `--network host`) and stops it, and everything it started, at
the end. No image registry is reachable, so the base image is made locally (tests/container/make_base_image.sh:
debootstrap bookworm + python3 + this machine's CA bundle) and the dependencies come from a wheelhouse in the build
context (docker/wheelhouse.sh: the hash-pinned lock, downloaded where pip's config points). Both are cached, and
the engine's data-root is kept, so a second run reuses the base image and the build cache.

Set VERIFILY_CONTAINER_TESTS=0 to skip this tier (e.g. on a machine where dockerd cannot run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifily_action import __version__

from . import comment_job
from .action_helpers import read_outputs
from .builders import GENERATED, cls_rows, write_config, write_dataset
from .github_fake import RUNTIME, TOKEN
from .github_fixtures import webhook_example
from .paths import REPO

pytestmark = pytest.mark.container

SCRIPTS = REPO / "tests" / "container"
IMAGE = os.environ.get("VERIFILY_TEST_IMAGE", "verifily-test/verifily:cpu")
COMMENT_IMAGE = f"{IMAGE.rpartition(':')[0]}:comment"
# proxy settings pass into the build as Docker's predefined build args (never stored in the image)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
TRAINING = {"max_steps": 4, "batch_size": 8, "max_length": 32, "logging_steps": 1, "learning_rate": 0.01}


def _sh(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="session")
def docker_env():
    """Environment (DOCKER_HOST set) for a running engine; stops the engine at the end if this fixture started it."""
    if os.environ.get("VERIFILY_CONTAINER_TESTS") == "0":
        pytest.skip("container tests turned off (VERIFILY_CONTAINER_TESTS=0)")
    if shutil.which("docker") is None and not Path("/usr/bin/docker").exists() and os.geteuid() != 0:
        pytest.skip("no docker client and not root (cannot install docker.io)")
    started = _sh(["bash", str(SCRIPTS / "start_dockerd.sh")], timeout=600)
    assert started.returncode == 0, f"could not start dockerd:\n{started.stderr}"
    match = re.search(r"DOCKER_HOST=(\S+)", started.stdout)
    assert match, started.stdout
    env = {**os.environ, "DOCKER_HOST": match.group(1)}
    we_started = "already running" not in started.stderr
    try:
        yield env
    finally:
        if we_started:
            _sh(["bash", str(SCRIPTS / "stop_dockerd.sh")], timeout=120)


def _docker(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return _sh([shutil.which("docker") or "/usr/bin/docker", *args], timeout=timeout, env=env)


@pytest.fixture(scope="session")
def build(docker_env):
    """Build a target on the local base image: (target, tag) -> its tag. Prints how long each step took."""
    made: dict[str, str] = {}

    def make(target: str, tag: str) -> str:
        if target not in made:
            made[target] = _build(docker_env, target, tag)
        return made[target]

    return make


@pytest.fixture(scope="session")
def image(build):
    """The `cpu` target's tag."""
    return build("cpu", IMAGE)


@pytest.fixture(scope="session")
def comment_image(build, image):
    """The `comment` target's tag (after the cpu build: its stages come first in the Dockerfile, so they are cached)."""
    return build("comment", COMMENT_IMAGE)


def _build(docker_env, target: str, tag: str) -> str:
    t0 = time.monotonic()
    base = _sh(["bash", str(SCRIPTS / "make_base_image.sh")], timeout=900, env=docker_env)
    assert base.returncode == 0, f"make_base_image.sh failed:\n{base.stderr}"
    base_tag = base.stdout.strip().splitlines()[-1]
    t1 = time.monotonic()
    wheels = _sh(
        ["bash", str(REPO / "docker" / "wheelhouse.sh"), "cpu"],
        timeout=900,
        env={**docker_env, "PYTHON": sys.executable},
    )
    assert wheels.returncode == 0, f"docker/wheelhouse.sh failed:\n{wheels.stderr}"
    t2 = time.monotonic()
    proxy = [f"--build-arg={k}={os.environ[k]}" for k in PROXY_VARS if os.environ.get(k)]
    built = _docker(
        docker_env,
        "build", "--network", "host", "--target", target,
        "--build-arg", f"CPU_BASE={base_tag}", "--build-arg", f"VERSION={__version__}", *proxy,
        "-t", tag, ".",
        timeout=1800,
    )  # fmt: skip
    assert built.returncode == 0, f"docker build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    t3 = time.monotonic()
    print(
        f"\ncontainer image {target}: base {t1 - t0:.0f}s, wheelhouse {t2 - t1:.0f}s, build {t3 - t2:.0f}s",
        file=sys.stderr,
    )
    return tag


def _run(env, image: str, *args: str, ws: Path | None = None, extra: list[str] | None = None, timeout: float = 600):
    """`docker run --rm --network host` with `ws` mounted as the workspace and working directory, as the runner does."""
    mounts = ["-v", f"{ws}:/github/workspace", "--workdir", "/github/workspace"] if ws else []
    offline = ["-e", "HF_HUB_OFFLINE=1", "-e", "TRANSFORMERS_OFFLINE=1", "-e", "HF_DATASETS_OFFLINE=1"]
    return _docker(
        env, "run", "--rm", "--network", "host", *offline, *mounts, *(extra or []), image, *args, timeout=timeout
    )


def _workspace(tmp_path: Path, **config) -> Path:
    """A workspace with a tiny classification dataset and a train.yaml on the embedded MiniLM model."""
    ws = tmp_path / "ws"
    rows = cls_rows(32)
    write_dataset(ws / "datasets", "cls", "v1", {"train": rows, "eval": cls_rows(16, 1)}, **GENERATED)
    cfg = {
        "task": "classification",
        "model": "all-MiniLM-L6-v2",
        "dataset": "cls@v1",
        "datasets_root": "datasets",
        "output_dir": "runs",
        "training": TRAINING,
        "eval": {"slice_by": ["source"]},
        **config,
    }
    write_config(ws / "train.yaml", **cfg)
    return ws


def test_image_follows_the_action_rules(docker_env, image):
    info = json.loads(_docker(docker_env, "image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["Entrypoint"] == ["/opt/venv/bin/python", "/app/entrypoint.py"]  # exec form, absolute
    assert cfg.get("User", "") in ("", "root") and cfg.get("WorkingDir", "") in ("", "/")
    assert set(cfg["Volumes"]) == {"/cache/huggingface", "/github/workspace"}
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")
    assert labels["io.verifily.image.target"] == "cpu"
    names = [e.split("=", 1)[0] for e in cfg["Env"]]
    assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|PROXY", n, re.I)], names
    print(f"\ncontainer image size: {info['Size'] / 1e9:.2f} GB", file=sys.stderr)


def test_plain_cli_version_and_validate(docker_env, image, tmp_path):
    out = _run(docker_env, image, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"verifily {__version__}", out.stderr
    ok = _run(docker_env, image, "validate", "examples/train.yaml", ws=REPO)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
    ws = tmp_path / "bad"
    ws.mkdir()
    (ws / "train.yaml").write_text("task: classification\nmodel: m\ndataset: d@v1\nepochz: 3\n")
    bad = _run(docker_env, image, "validate", "train.yaml", ws=ws)
    assert bad.returncode == 2 and "epochz" in bad.stderr and "Traceback" not in bad.stderr


def test_train_then_eval_in_the_container(docker_env, image, tmp_path):
    ws = _workspace(tmp_path)
    t0 = time.monotonic()
    train = _run(docker_env, image, "train", "--config", "train.yaml", ws=ws, timeout=900)
    elapsed = time.monotonic() - t0
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "no NVIDIA GPU is visible" not in train.stderr  # fp32/auto on CPU: nothing to warn about
    (run_dir,) = [p for p in (ws / "runs").iterdir() if (p / "run_meta.json").exists()]
    meta = json.loads((run_dir / "run_meta.json").read_text())
    assert meta["status"] == "completed" and meta["dataset"]["ref"] == "cls@v1"
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    print(f"\ncontainer train (4 steps, MiniLM): {elapsed:.0f}s", file=sys.stderr)
    ev = _run(docker_env, image, "eval", "--run", f"runs/{run_dir.name}", ws=ws, timeout=900)
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    results = json.loads(next((run_dir / "eval").glob("*/eval_results.json")).read_text())
    assert results["n"] == 16 and "accuracy" in results["overall"]
    # compare and its chart in the image (matplotlib is a runtime dependency, in the lock)
    runs = f"runs/{run_dir.name},runs/{run_dir.name}"
    cmp = _run(docker_env, image, "compare", "--runs", runs, "--chart", "runs/chart.png", ws=ws, timeout=300)
    assert cmp.returncode == 0, cmp.stdout[-3000:] + cmp.stderr[-3000:]
    assert (ws / "runs" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_warning_when_the_config_wants_cuda(docker_env, image, tmp_path):
    ws = _workspace(tmp_path, quantization="4bit")
    out = _run(docker_env, image, "train", "--config", "train.yaml", "--dry-run", ws=ws)
    assert "no NVIDIA GPU is visible" in out.stderr and "quantization: 4bit" in out.stderr, out.stderr
    assert "NVIDIA_VISIBLE_DEVICES" in out.stderr


def test_action_end_to_end_against_fake_github(docker_env, image, tmp_path, fake_github):
    ws = _workspace(tmp_path)
    files = tmp_path / "file_commands"  # the runner mounts its file-command folder at /github/file_commands
    files.mkdir()
    (files / "output").touch()
    (files / "summary.md").touch()
    workflow = tmp_path / "workflow"  # ... and the event payload at /github/workflow/event.json
    workflow.mkdir()
    pr = webhook_example("pull_request", "opened")
    (workflow / "event.json").write_text(json.dumps(pr))
    repo = pr["repository"]["full_name"]
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": "/github/workspace",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": "/github/workflow/event.json",
        "GITHUB_OUTPUT": "/github/file_commands/output",
        "GITHUB_STEP_SUMMARY": "/github/file_commands/summary.md",
        "GITHUB_API_URL": fake_github.api_url,  # 127.0.0.1: reachable through --network host
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": repo,
        "GITHUB_RUN_ID": "555",
        "GITHUB_WORKFLOW_REF": f"{repo}/.github/workflows/verifily.yml@refs/heads/main",
        "ACTIONS_RUNTIME_TOKEN": RUNTIME,
        "ACTIONS_RESULTS_URL": fake_github.api_url,
        "INPUT_CONFIG": "train.yaml",
        "INPUT_GITHUB-TOKEN": TOKEN,
        "INPUT_ARTIFACT-NAME": "verifily-run",
        "INPUT_BASELINE": "auto",
        "INPUT_COMMENT": "true",
        "INPUT_MODE": "train-eval",
    }
    extra = ["-v", f"{files}:/github/file_commands", "-v", f"{workflow}:/github/workflow"]
    for k, v in env.items():
        extra += ["-e", f"{k}={v}"]
    t0 = time.monotonic()
    out = _run(docker_env, image, ws=ws, extra=extra, timeout=900)  # no arguments: the Action's flow
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert TOKEN not in out.stdout.replace(f"::add-mask::{TOKEN}", "") and TOKEN not in out.stderr
    comments = fake_github.comments.get(pr["number"], [])
    assert len(comments) == 1 and "## Verifily Train" in comments[0]["body"]
    assert "No baseline: " in comments[0]["body"] and "| source=" in comments[0]["body"]  # this run's own slices
    assert "## Verifily Train" in (files / "summary.md").read_text()
    outputs = read_outputs(files / "output")
    assert outputs["comment-url"] == comments[0]["html_url"] and outputs["run-key"]
    run_path = Path(outputs["run-dir"])
    run_dir = ws / run_path.relative_to("/github/workspace") if run_path.is_absolute() else ws / run_path
    assert json.loads((run_dir / "run_meta.json").read_text())["status"] == "completed"
    upload = fake_github.uploads["verifily-run"]
    assert upload["finalize"]["hash"].startswith("sha256:") and upload["data"]
    print(f"\ncontainer start-to-comment (Action, tiny run): {elapsed:.0f}s", file=sys.stderr)


# ---------------------------------------------------------------- the comment image


def test_comment_image_has_no_ml_stack(docker_env, comment_image):
    info = json.loads(_docker(docker_env, "image", "inspect", comment_image).stdout)[0]
    assert info["Config"]["Labels"]["io.verifily.image.target"] == "comment"
    assert info["Config"]["Entrypoint"] == ["/opt/venv/bin/python", "/app/entrypoint.py"]
    probe = f"import importlib.util as u; print([m for m in {comment_job.HEAVY!r} if u.find_spec(m)])"
    found = _run(docker_env, comment_image, "-c", probe, extra=["--entrypoint", "/opt/venv/bin/python"])
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
    out = _run(docker_env, comment_image, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"verifily {__version__}", out.stderr
    refused = _run(docker_env, comment_image, "train", "--config", "train.yaml")
    assert refused.returncode == 2 and "needs torch" in refused.stderr
    print(f"\ncontainer image size: comment {info['Size'] / 1e9:.2f} GB", file=sys.stderr)


def test_images_carry_no_installer(docker_env, image, comment_image):
    """pip and setuptools stay in the build stages (docker/install-deps.sh): neither image can install anything."""
    probe = "import importlib.util as u; print([m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)])"
    for tag in (image, comment_image):
        found = _run(docker_env, tag, "-c", probe, extra=["--entrypoint", "/opt/venv/bin/python"])
        assert found.returncode == 0 and found.stdout.strip() == "[]", (tag, found.stdout, found.stderr)


def test_comment_action_end_to_end_against_fake_github(docker_env, comment_image, tmp_path, fake_github):
    """The comment action's container as the runner starts it (no `mode` input: the image runs comment mode)."""
    job = comment_job.setup(fake_github, tmp_path)
    ws, files, workflow = tmp_path / "ws", tmp_path / "file_commands", tmp_path / "workflow"
    for d in (ws, files, workflow):
        d.mkdir()
    (files / "output").touch()
    (files / "summary.md").touch()
    (workflow / "event.json").write_text(json.dumps(job["event"]))
    env = comment_job.runner_env(
        fake_github, "/github/workflow/event.json", "/github/file_commands", "/github/workspace"
    )
    extra = ["-v", f"{files}:/github/file_commands", "-v", f"{workflow}:/github/workflow"]
    for k, v in env.items():
        extra += ["-e", f"{k}={v}"]
    t0 = time.monotonic()
    out = _run(docker_env, comment_image, ws=ws, extra=extra, timeout=300)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (comment,) = fake_github.comments[job["number"]]
    assert "## Verifily Train" in comment["body"] and f"[run {job['base_run']['id']}]" in comment["body"]
    assert read_outputs(files / "output")["comment-url"] == comment["html_url"]
    print(f"\ncontainer start-to-comment (comment image, workflow_run job): {elapsed:.1f}s", file=sys.stderr)


def test_the_server_runs_in_the_image_against_postgresql(docker_env, image, tmp_path):
    """`verifily server init` and `verifily server` in the cpu image (the compose file's `init` and `server`), on a real
    PostgreSQL (tests/pg_server.py, reached over the host network): health, a token, and the dashboard's login page
    with its vendored chart script served from the package data."""
    import requests

    from verifily_action.dashboard.render import static_text

    from . import pg_server
    from .server_proc import TOKEN as TOKEN_TEXT

    pg = pg_server.start()
    name = f"verifily-server-{os.getpid()}"
    try:
        db = pg.create_database("image")
        init = _run(docker_env, image, "server", "init", "--db", db, "--store", "/srv/verifily", timeout=300)
        assert init.returncode == 0, init.stdout + init.stderr
        token = TOKEN_TEXT.search(init.stdout)[0]
        port = pg_server.free_port()
        args = ["server", "--db", db, "--store", "/srv/verifily", "--host", "127.0.0.1", "--port", str(port)]
        started = _docker(docker_env, "run", "-d", "--name", name, "--network", "host", image, *args)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # start-up wait, not a measurement
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("the server in the image did not answer: " + _docker(docker_env, "logs", name).stderr[-3000:])
        who = requests.get(url + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert who.status_code == 200 and who.json()["org"] == "admin"
        login = requests.get(url + "/ui/login", timeout=30)
        assert login.status_code == 200 and "script-src 'self'" in login.headers["content-security-policy"]
        chart = requests.get(url + "/ui/static/chart.umd.min.js", timeout=30)
        assert chart.status_code == 200 and chart.text == static_text("chart.umd.min.js")
    finally:
        _docker(docker_env, "rm", "-f", name, timeout=120)
        pg.stop()
