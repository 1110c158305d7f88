"""The Action's flow against the fake GitHub, without training: a stub pipeline, the `env` fixture that sets the
environment a runner would, and helpers to send an event and read the step's outputs back.

tests/conftest.py loads this module as a plugin (`pytest_plugins`), so tests/test_github_action.py and
tests/test_github_degrade.py get `env` by naming it as an argument and import only the plain helpers.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from verifily_action.action import flow as action
from verifily_action.action.stages import Outcome
from verifily_action.errors import VerifilyError

from .github_fake import RUNTIME, TOKEN

GH_REPO = "Codertocat/Hello-World"  # the repository the fake GitHub plays
A_RUN = {"run_meta.json": b'{"run_key": "base", "status": "completed"}'}  # an artifact's members: a minimal run


class StubPipeline(action.Pipeline):
    """Train makes a small run folder, compare a fixed report naming the baseline's run key: only the GitHub side
    of the flow is real."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        self.baselines: list[Path | None] = []
        self.n = 0

    def validate(self, config: Path) -> None:
        pass

    def check(self, run_dir: Path) -> None:  # the stub's runs hold no evaluation to check
        pass

    def train(self, inputs):
        self.n += 1
        d = self.ws / "runs" / f"run{self.n}"
        d.mkdir(parents=True)
        (d / "run_meta.json").write_text(json.dumps({"run_key": f"key{self.n}", "status": "completed"}))
        return d

    def evaluate(self, run_dir, inputs):
        (run_dir / "eval_results.json").write_text("{}")

    def compare(self, run_dir, baseline_dir, inputs):
        self.baselines.append(baseline_dir)
        if baseline_dir and not (baseline_dir / "run_meta.json").is_file():  # as the real compare says it
            raise VerifilyError(f"{baseline_dir} is not a run folder (no run_meta.json)")
        meta = json.loads((baseline_dir / "run_meta.json").read_text()) if baseline_dir else None
        return Outcome(
            markdown=f"| slice | delta |\n|---|---|\n| @octocat | vs {meta and meta['run_key']} |", regressions=0
        )


@pytest.fixture
def env(fake_github, tmp_path, monkeypatch):
    """The runner's environment pointed at the fake GitHub, a workspace, and the stub pipeline in place."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(tmp_path)
    values = {
        "GITHUB_WORKSPACE": str(ws),
        "GITHUB_API_URL": fake_github.api_url,
        "GITHUB_REPOSITORY": GH_REPO,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "555",
        "GITHUB_WORKFLOW_REF": f"{GH_REPO}/.github/workflows/verifily.yml@refs/heads/master",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "ACTIONS_RUNTIME_TOKEN": RUNTIME,
        "ACTIONS_RESULTS_URL": fake_github.api_url,
        "INPUT_GITHUB-TOKEN": TOKEN,
        "INPUT_CONFIG": "train.yaml",
        "INPUT_ARTIFACT-NAME": "verifily-run",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    stub = StubPipeline(ws)
    monkeypatch.setattr(action, "PIPELINE", stub)
    return {"ws": ws, "tmp": tmp_path, "stub": stub, "monkeypatch": monkeypatch}


def fast_retries(monkeypatch, fake) -> list[float]:
    """The Action's GitHub client (default cap on waits) with its retry waits recorded instead of slept; returns
    the record."""
    from verifily_action.github.client import GitHubClient

    sleeps: list[float] = []
    fast = functools.partial(GitHubClient, TOKEN, fake.api_url, backoff=0.01, sleep=sleeps.append)
    monkeypatch.setattr(action, "_client", lambda inputs, ctx: fast())
    return sleeps


def set_event(env, name: str, payload: dict) -> None:
    """Make `payload` the event the next run of the flow handles (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH)."""
    p = env["tmp"] / f"{name}.json"
    p.write_text(json.dumps(payload))
    env["monkeypatch"].setenv("GITHUB_EVENT_NAME", name)
    env["monkeypatch"].setenv("GITHUB_EVENT_PATH", str(p))


def parse_outputs(text: str) -> dict[str, str]:
    """The `name<<delimiter` entries of a GITHUB_OUTPUT file; later entries win, as on the runner."""
    return {m[0]: m[2] for m in re.findall(r"^(\S+)<<(ghadelimiter_\w+)\n(.*?)\n\2$", text, re.S | re.M)}


def read_outputs(path: Path) -> dict[str, str]:
    """The outputs in a GITHUB_OUTPUT file; none when the file was never written."""
    return parse_outputs(path.read_text(encoding="utf-8") if path.exists() else "")


def step_outputs(env) -> dict[str, Any]:
    """The outputs the flow wrote under the `env` fixture (the file must exist)."""
    return parse_outputs((env["tmp"] / "output").read_text())


def pr_context(pr: dict[str, Any], run_name: str, **extra: Any) -> bytes:
    """The verifily-pr.json a pull request's job uploads with its run (schemas/pr_context.schema.json), for the
    pull_request webhook payload `pr`; `extra`: more fields (fail_on, slice_by)."""
    p = pr["pull_request"]
    return json.dumps(
        {
            "schema_version": 1,
            "repository": GH_REPO,
            "pr_number": pr["number"],
            "head_sha": p["head"]["sha"],
            "base_ref": p["base"]["ref"],
            "base_sha": p["base"]["sha"],
            "workflow": "verifily.yml",
            "config": "train.yaml",
            "run_name": run_name,
            **extra,
        }
    ).encode()
