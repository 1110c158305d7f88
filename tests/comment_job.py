"""The `workflow_run` comment job, set up on the fake GitHub for a run outside the test process: a fork's pull
request whose finished run holds its evaluated run folder as the artifact, and a base-branch run at the merge base
holding the baseline's. `runner_env` is the environment the runner gives the container (inputs as the comment
action passes them); tests/test_action_images.py runs it with only the comment image's packages importable, and
tests/test_container.py in the comment image itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .compare_fakes import make_run, records
from .github_fake import RUNTIME, TOKEN, FakeGitHub
from .github_fixtures import webhook_example, zip_of

REPO = "Codertocat/Hello-World"  # the repository the fake GitHub plays
FORK = "mallory/Hello-World"
ARTIFACT = "verifily-run"
# what the comment image leaves out (docker/lock.py COMMENT_EXCLUDE): comment mode must not even try to import them
HEAVY = (
    "torch", "transformers", "peft", "datasets", "accelerate", "safetensors", "matplotlib", "gguf", "scipy", "trl",
    "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "jinja2",
)  # fmt: skip


def _members(folder: Path, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return {**files, **(extra or {})}


def setup(fake: FakeGitHub, tmp: Path) -> dict[str, Any]:
    """The fork's run (human 0.6 → 0.9 accuracy over the baseline) and the baseline on `fake`; returns the pull
    request's number and the workflow_run payload."""
    pr = webhook_example("pull_request", "opened")
    p = pr["pull_request"]
    head = p["head"]["sha"]
    sizes = {"human": 40, "synthetic": 40}
    base = make_run(tmp / "runs", "base", records(sizes, {"human": 0.6, "synthetic": 0.8}, seed=1))
    cand = make_run(tmp / "runs", "cand", records(sizes, {"human": 0.9, "synthetic": 0.8}, seed=2))
    context = {
        "schema_version": 1,
        "repository": REPO,
        "pr_number": pr["number"],
        "head_sha": head,
        "base_ref": p["base"]["ref"],
        "base_sha": p["base"]["sha"],
        "workflow": "verifily.yml",
        "config": "train.yaml",
        "run_name": "cand",
    }
    run = fake.add_run(head, branch="changes", head_repo=FORK, event="pull_request")
    fake.add_artifact(run["id"], ARTIFACT, zip_of(_members(cand, {"verifily-pr.json": json.dumps(context).encode()})))
    pull = fake.add_pull(pr["number"], head, head_repo=FORK)
    pull["base"].update(ref=p["base"]["ref"], sha=p["base"]["sha"])
    base_run = fake.add_run(p["base"]["sha"], branch=p["base"]["ref"])
    fake.add_artifact(base_run["id"], ARTIFACT, zip_of(_members(base)))
    fake.merge_bases[f"{p['base']['sha']}...{head}"] = p["base"]["sha"]
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(id=run["id"], head_sha=head, pull_requests=[], path=".github/workflows/verifily.yml")
    wr["workflow_run"]["head_repository"]["full_name"] = FORK
    return {"number": pr["number"], "event": wr, "base_run": base_run}


def runner_env(fake: FakeGitHub, event_path: str, files_dir: str, workspace: str) -> dict[str, str]:
    """What the runner sets for the comment action's container (paths as the container sees them). No INPUT_MODE:
    the comment action has no `mode` input, the comment image runs comment mode."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": workspace,
        "GITHUB_EVENT_NAME": "workflow_run",
        "GITHUB_EVENT_PATH": event_path,
        "GITHUB_OUTPUT": f"{files_dir}/output",
        "GITHUB_STEP_SUMMARY": f"{files_dir}/summary.md",
        "GITHUB_API_URL": fake.api_url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_RUN_ID": str(fake.new_id()),
        "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/verifily-comment.yml@refs/heads/master",
        "ACTIONS_RUNTIME_TOKEN": RUNTIME,
        "ACTIONS_RESULTS_URL": fake.api_url,
        "INPUT_GITHUB-TOKEN": TOKEN,
        "INPUT_ARTIFACT-NAME": ARTIFACT,
        "INPUT_BASELINE": "auto",
        "INPUT_COMMENT": "true",
    }
