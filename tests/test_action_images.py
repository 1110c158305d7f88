"""The Action's prebuilt images: three action.yml files (root: `-cpu`, gpu/: `-cuda`, comment/: `-comment`) that share
their inputs, tagged with the package version, and the comment image's promise that comment mode and `verifily
compare` run with only docker/requirements-comment.lock's packages (no torch, transformers, peft or datasets).

The comment path runs in a subprocess whose imports are limited to the comment lock's packages (plus the standard
library and verifily itself), against the fake GitHub; tests/test_container.py runs the comment image for real.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from verifily_action import __version__

from . import comment_job
from .action_helpers import read_outputs
from .paths import REPO

pytestmark = pytest.mark.unit

ACTIONS = {"cpu": REPO / "action.yml", "cuda": REPO / "gpu" / "action.yml", "comment": REPO / "comment" / "action.yml"}
HEAVY = comment_job.HEAVY


def _action(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _variants():
    """scripts/action_variants.py, loaded from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("action_variants", REPO / "scripts" / "action_variants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_action_yml_is_what_the_variants_script_writes():
    """gpu/ and comment/ are written from the root action.yml (scripts/action_variants.py), never by hand."""
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "action_variants.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert "up to date" in check.stdout


def test_the_variants_share_the_root_inputs():
    root, gpu, comment = (_action(ACTIONS[t]) for t in ("cpu", "cuda", "comment"))
    assert gpu["inputs"] == root["inputs"] and gpu["outputs"] == root["outputs"]
    left_out = set(_variants().COMMENT_LEAVES_OUT)
    assert {"mode", "dataset", "signing-key"} <= left_out and "config" not in left_out  # config: the base's gates
    # every input the comment action has is the root's, word for word (default and description)
    assert comment["inputs"] == {k: v for k, v in root["inputs"].items() if k not in left_out}
    assert set(comment["outputs"]) == {"comment-url", "regressions"}
    assert all(comment["outputs"][k] == root["outputs"][k] for k in comment["outputs"])
    for doc in (root, gpu, comment):
        assert doc["runs"]["using"] == "docker"


def test_a_drifted_input_is_caught(tmp_path):
    """The check itself: an edited description in a variant no longer matches what the script writes."""
    module = _variants()
    root_text = (REPO / "action.yml").read_text(encoding="utf-8")
    drifted = module.render("gpu", root_text).replace("relative to working-directory", "relative to the root", 1)
    assert drifted != module.render("gpu", root_text)
    assert yaml.safe_load(drifted)["inputs"] != _action(ACTIONS["cpu"])["inputs"]


@pytest.mark.parametrize("target", list(ACTIONS))
def test_every_action_image_is_the_package_version(target):
    image = _action(ACTIONS[target])["runs"]["image"]
    assert image == f"docker://ghcr.io/verifily/verifily-train:{__version__}-{target}"


def test_the_release_workflow_pushes_every_actions_image():
    flow = _action(REPO / ".github" / "workflows" / "image.yml")
    job = flow["jobs"]["image"]
    assert set(job["strategy"]["matrix"]["target"]) == set(ACTIONS)
    assert {"id-token": "write", "attestations": "write", "packages": "write"}.items() <= flow["permissions"].items()
    steps = {s.get("uses", "").split("@")[0]: s for s in job["steps"]}
    build = steps["docker/build-push-action"]["with"]
    assert build["provenance"] == "mode=max" and build["sbom"] is True and build["push"] is True
    assert "${{ matrix.target }}" in build["target"]
    attest = steps["actions/attest-build-provenance"]["with"]
    assert attest["push-to-registry"] is True and "digest" in attest["subject-digest"]
    # the image name and tag the actions pull: ghcr.io/<owner>/<repo>:<version>-<target>
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'image="ghcr.io/${GITHUB_REPOSITORY,,}"' in script and "$version-${{ matrix.target }}" in script
    assert "__version__" in script  # the tag must be the package version


def test_the_example_workflows_use_the_local_actions():
    flows = REPO / ".github" / "workflows"
    train = _action(flows / "verifily.yml")["jobs"]["train-eval"]["steps"]
    comment = _action(flows / "verifily-comment.yml")["jobs"]["comment"]["steps"]
    assert "./" in [s.get("uses") for s in train]
    assert "./comment" in [s.get("uses") for s in comment]


# ---------------------------------------------------------------- the comment image's packages


def _comment_lock() -> dict[str, str]:
    text = (REPO / "docker" / "requirements-comment.lock").read_text(encoding="utf-8")
    return dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, re.M))


def _cpu_lock() -> dict[str, str]:
    text = (REPO / "docker" / "requirements-cpu.lock").read_text(encoding="utf-8")
    return dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, re.M))


def test_the_comment_lock_has_no_ml_stack_and_the_cpu_locks_versions():
    comment, cpu = _comment_lock(), _cpu_lock()
    assert comment and not set(HEAVY) & set(comment)
    assert not {"pyarrow", "pandas", "scipy", "tokenizers", "huggingface-hub"} & set(comment)
    assert {n: cpu.get(n) for n in comment} == comment  # the same versions as the cpu image
    for dep in ("numpy", "pyyaml", "jsonschema", "requests", "typer", "rich", "cryptography"):
        assert dep in comment, dep
    hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", (REPO / "docker" / "requirements-comment.lock").read_text())
    assert len(hashes) == len(comment)


def _importable() -> list[str]:
    """Top-level import names of the comment lock's distributions (as installed here)."""
    names = set(_comment_lock())
    tops = {top for top, dists in md.packages_distributions().items() if {_norm(d) for d in dists} & names}
    return sorted(tops)


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# Runs argv[1] (a script) with argv[2:] as its arguments, every import outside the standard library, verifily and
# the allowed top-level names failing as if not installed; prints the names it refused on stderr at exit.
LIMITED = """
import atexit, importlib.abc, json, os, runpy, sys
allowed = set(json.loads(os.environ.pop("ALLOWED_IMPORTS")))
refused = []
class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in allowed or top == "verifily_action" or top.startswith("_"):
            return None
        refused.append(name)
        raise ModuleNotFoundError(f"No module named {name!r} (not in the comment image)", name=name)
sys.meta_path.insert(0, NotInTheImage())
atexit.register(lambda: print("REFUSED " + json.dumps(sorted(set(refused))), file=sys.stderr))
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def _limited(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {**env, "ALLOWED_IMPORTS": json.dumps(_importable()), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )
    refused = re.findall(r"^REFUSED (.*)$", proc.stderr, re.M)
    return proc, json.loads(refused[-1]) if refused else []


def test_comment_mode_runs_with_only_the_comment_images_packages(fake_github, tmp_path):
    job = comment_job.setup(fake_github, tmp_path)
    ws, files = tmp_path / "ws", tmp_path / "files"
    ws.mkdir()
    files.mkdir()
    (files / "event.json").write_text(json.dumps(job["event"]), encoding="utf-8")
    env = comment_job.runner_env(fake_github, str(files / "event.json"), str(files), str(ws))
    env.update({"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "VERIFILY_IMAGE_TARGET": "comment"})
    proc, refused = _limited([str(REPO / "entrypoint.py")], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not [m for m in refused if m.partition(".")[0] in HEAVY], refused  # never even tried
    (comment,) = fake_github.comments[job["number"]]
    assert "## Verifily Train" in comment["body"] and f"[run {job['base_run']['id']}]" in comment["body"]
    assert "| source=human |" in comment["body"]
    assert read_outputs(files / "output")["comment-url"] == comment["html_url"]


def test_the_comment_image_refuses_what_needs_torch(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VERIFILY_IMAGE_TARGET": "comment"}
    train, _ = _limited([str(REPO / "entrypoint.py"), "train", "--config", "x.yaml"], env, tmp_path)
    assert train.returncode == 2 and "`verifily train` needs torch" in train.stderr and "-cpu" in train.stderr
    mode, _ = _limited([str(REPO / "entrypoint.py")], {**env, "INPUT_MODE": "train-eval"}, tmp_path)
    assert mode.returncode == 2 and "::error::the comment image runs `mode: comment` only" in mode.stdout


def test_compare_runs_with_only_the_comment_images_packages(tmp_path):
    from .compare_fakes import make_run, records

    a = make_run(tmp_path, "a", records({"human": 40, "synthetic": 40}, {"human": 0.6, "synthetic": 0.8}, seed=1))
    b = make_run(tmp_path, "b", records({"human": 40, "synthetic": 40}, {"human": 0.9, "synthetic": 0.8}, seed=2))
    env = {"PATH": "/usr/bin:/bin", "VERIFILY_IMAGE_TARGET": "comment"}
    args = ["compare", "--runs", f"{a},{b}", "--format", "markdown"]
    proc, refused = _limited([str(REPO / "entrypoint.py"), *args], env, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| source=human |" in proc.stdout
    assert not [m for m in refused if m.partition(".")[0] in HEAVY], refused
    version, _ = _limited([str(REPO / "entrypoint.py"), "--version"], env, tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"verifily {__version__}"


def test_the_limit_would_catch_a_heavy_import(tmp_path):
    """The check itself: a torch import in the limited process fails as it would in the comment image."""
    script = tmp_path / "heavy.py"
    script.write_text("import torch\n")
    proc, refused = _limited([str(script)], {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert proc.returncode != 0 and "not in the comment image" in proc.stderr and refused == ["torch"]
