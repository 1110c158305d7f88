"""Runs of `python entrypoint.py` against the fake GitHub, in one workspace that plays a repository's history.

`Repo.run` sets the environment the runner would (event payload, inputs, output and summary files, the API and
results-service URLs) and returns what the run printed, wrote and left on the fake; tests/test_action_flow.py
drives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .action_helpers import read_outputs
from .builders import write_config
from .compare_real import demo_config, write_subset
from .github_fake import TOKEN, FakeGitHub, runtime_token
from .paths import REPO

NAME = "Codertocat/Hello-World"
ARTIFACT = "verifily-run"


class Repo:
    """The workspace, the fake GitHub and the runs of entrypoint.py made against them."""

    def __init__(self, tmp: Path, fake: FakeGitHub) -> None:
        self.tmp, self.fake = tmp, fake
        self.ws = tmp / "ws"
        write_subset(self.ws / "datasets")
        self.configure("v1")
        self.comment_posted: list[float] = []
        post = fake.add_comment

        def timed(*a: Any, **kw: Any) -> dict[str, Any]:
            self.comment_posted.append(time.monotonic())
            return post(*a, **kw)

        fake.add_comment = timed  # type: ignore[method-assign]

    def configure(self, version: str) -> None:
        """The workspace's train.yaml: training on ds_demo@`version`."""
        write_config(self.ws / "train.yaml", **demo_config(version, "datasets", "runs"))

    def run(self, event: str, payload: dict[str, Any], step: str, **inputs: str) -> dict[str, Any]:
        files = self.tmp / step
        files.mkdir()
        (files / "event.json").write_text(json.dumps(payload), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "ACTIONS_"))}
        # torch's worker threads spin against the other jobs sharing this machine's cores: one thread trains the
        # tiny model several times faster there (same numbers); a caller's own setting wins
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "HF_HOME": str(self.tmp / "hf"),
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(self.ws),
                "GITHUB_EVENT_NAME": event,
                "GITHUB_EVENT_PATH": str(files / "event.json"),
                "GITHUB_OUTPUT": str(files / "output"),
                "GITHUB_STEP_SUMMARY": str(files / "summary.md"),
                "GITHUB_API_URL": self.fake.api_url,
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_REPOSITORY": NAME,
                "GITHUB_RUN_ID": str(run_id := self.fake.new_id()),
                "GITHUB_WORKFLOW_REF": f"{NAME}/.github/workflows/verifily.yml@refs/heads/master",
                # each run is a workflow run of its own: the results service keeps artifact names unique per run
                "ACTIONS_RUNTIME_TOKEN": runtime_token(f"Actions.Results:run-{run_id}:job-{run_id}"),
                "ACTIONS_RESULTS_URL": self.fake.api_url,
                "INPUT_GITHUB-TOKEN": TOKEN,
                "INPUT_CONFIG": "train.yaml",
                "INPUT_ARTIFACT-NAME": ARTIFACT,
                "INPUT_BASELINE": "auto",
                "INPUT_COMMENT": "true",
                "INPUT_MODE": "train-eval",
                **{f"INPUT_{k.upper().replace('_', '-')}": v for k, v in inputs.items()},
            }
        )
        run_id = env["GITHUB_RUN_ID"]
        posted = len(self.comment_posted)
        sent = len(self.fake.requests)
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(REPO / "entrypoint.py")],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        elapsed = time.monotonic() - t0
        first_post = self.comment_posted[posted] - t0 if len(self.comment_posted) > posted else None
        return {
            "rc": proc.returncode,
            "run_id": run_id,
            "out": proc.stdout,
            "err": proc.stderr,
            "outputs": read_outputs(files / "output"),
            "summary": (files / "summary.md").read_text(encoding="utf-8") if (files / "summary.md").exists() else "",
            "seconds": elapsed,
            "to_comment": first_post,
            "creates": len(self.fake.calls("POST", "CreateArtifact$")),
            "requests": self.fake.requests[sent:],  # what this run asked of GitHub
            "upload": dict(self.fake.uploads.get(ARTIFACT) or {}),
            # the comments as this run left them (a later run edits them in place)
            "bodies": {n: [c["body"] for c in cs] for n, cs in self.fake.comments.items()},
        }


def out_id(r: dict[str, Any]) -> str:
    return r["outputs"].get("artifact-id", "")


def show(r: dict[str, Any]) -> str:
    return f"rc={r['rc']}\n--- stdout\n{r['out'][-4000:]}\n--- stderr\n{r['err'][-4000:]}"
