"""The Action's flow (`verifily_action.action.flow.main`) against the fake GitHub, with real webhook payloads.

Training, evaluation and comparison belong to other modules: here a stub pipeline makes a small run folder and a
fixed report, so these tests exercise only the GitHub side (baseline, comment, summary, outputs, artifact). The stub
and the `env` fixture live in tests/action_helpers.py (a plugin of tests/conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from verifily_action.action import flow as action

from .action_helpers import A_RUN, GH_REPO, set_event, step_outputs
from .github_fake import TOKEN
from .github_fixtures import webhook_example, zip_of
from .paths import REPO as ROOT

pytestmark = pytest.mark.unit


def _push_then_publish(fake, env) -> dict:
    """A push to master runs, uploads its artifact; the fake then lists it as that run's artifact."""
    push = webhook_example("push", pred=lambda x: x["ref"] == "refs/heads/master")
    set_event(env, "push", push)
    assert action.main() == 0
    run = fake.add_run(push["after"], branch="master")
    fake.add_artifact(run["id"], "verifily-run", fake.uploads["verifily-run"]["data"])
    return run


def test_push_then_pull_request_comments_once_and_updates(fake_github, env, capsys):
    base_run = _push_then_publish(fake_github, env)
    assert not fake_github.calls("POST", "/comments$")  # a push never comments
    pr = webhook_example("pull_request", "synchronize")
    fake_github.merge_bases[f"{pr['pull_request']['base']['sha']}...{pr['pull_request']['head']['sha']}"] = base_run[
        "head_sha"
    ]
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    assert action.main() == 0  # a second push to the PR: same comment, updated
    comments = fake_github.comments[pr["number"]]
    assert len(comments) == 1
    body = comments[0]["body"]
    assert "<!-- verifily-action:sticky:" in body and f"run {base_run['id']}" in body and "merge-base" in body
    assert "vs key1" in body  # compared with the push run's folder, downloaded from the artifact
    assert len(fake_github.calls("PATCH", r"/issues/comments/\d+$")) == 1
    out = step_outputs(env)
    assert out["comment-url"] == comments[0]["html_url"] and out["run-key"] == "key3" and out["regressions"] == "0"
    assert Path(out["run-dir"]).name == "run3"
    assert "## Verifily Train" in (env["tmp"] / "summary.md").read_text()
    # the artifact is uploaded before the comment is posted, and the comment links it
    assert out["artifact-id"].isdigit()
    assert f"(https://github.com/{GH_REPO}/actions/runs/555/artifacts/{out['artifact-id']})" in body
    finalized = [i for i, r in enumerate(fake_github.requests) if r.path.endswith("/FinalizeArtifact")]
    edited = [i for i, r in enumerate(fake_github.requests) if r.method == "PATCH"]
    assert finalized[-1] < edited[-1]
    declared = yaml.safe_load((ROOT / "action.yml").read_text())["outputs"]
    assert set(out) <= set(declared), set(out) - set(declared)
    pr_ctx = fake_github.uploads["verifily-run"]
    assert pr_ctx["finalize"]["hash"].startswith("sha256:")
    captured = capsys.readouterr()
    assert f"::add-mask::{TOKEN}" in captured.out
    assert TOKEN not in captured.out.replace(f"::add-mask::{TOKEN}", "") and TOKEN not in captured.err
    assert "::group::Baseline" in captured.out


def test_no_baseline_still_succeeds_and_says_why(fake_github, env):
    pr = webhook_example("pull_request", "opened")
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    body = fake_github.comments[pr["number"]][0]["body"]
    assert "No baseline: no successful run" in body and env["stub"].baselines == [None]


def test_fork_pull_request_degrades_then_comment_job_posts(fake_github, env, capsys):
    pr = webhook_example("pull_request", "opened")
    pr["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    assert pr["number"] not in fake_github.comments
    assert "::notice::pull request from a fork" in capsys.readouterr().out
    data = fake_github.uploads["verifily-run"]["data"]
    # the workflow_run job: the fork run's artifact, checked against the PR's head commit
    head = pr["pull_request"]["head"]["sha"]
    fork_run = fake_github.add_run(head, branch="changes", head_repo="mallory/Hello-World", event="pull_request")
    fake_github.add_artifact(fork_run["id"], "verifily-run", data)
    fake_github.add_pull(pr["number"], head, head_repo="mallory/Hello-World")
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(id=fork_run["id"], head_sha=head, pull_requests=[], path=".github/workflows/verifily.yml")
    wr["workflow_run"]["head_repository"]["full_name"] = "mallory/Hello-World"
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    assert action.main() == 0
    assert len(fake_github.comments[pr["number"]]) == 1
    body = fake_github.comments[pr["number"]][0]["body"]
    art = fake_github.artifacts[fork_run["id"]][0]
    # the links point at the fork's run and its artifact, not at this commenting job
    assert f"(https://github.com/{GH_REPO}/actions/runs/{fork_run['id']}/artifacts/{art['id']})" in body
    assert "failed" not in body
    # a tampered artifact (PR number of another PR) is refused
    fake_github.add_pull(pr["number"], "f" * 40)
    assert action.main() == 2
    assert "refusing to comment" in capsys.readouterr().out


def test_config_errors_become_annotations(fake_github, env, monkeypatch, capsys):
    monkeypatch.setattr(action, "PIPELINE", action.Pipeline())
    (env["ws"] / "train.yaml").write_text("task: classification\nmodel: m\ndataset: d@v1\nepochz: 3\n")
    set_event(env, "pull_request", webhook_example("pull_request", "opened"))
    assert action.main() == 2
    out = capsys.readouterr().out
    assert re.search(r"^::error title=[^:]*,file=train.yaml,line=4,col=1::unknown key `epochz`", out, re.M), out


def test_unwired_stages_say_so(fake_github, env, monkeypatch, capsys):
    class NoTrain(action.Pipeline):
        def validate(self, config):
            pass

        def train(self, inputs):  # a stage that refuses: an annotation, and nothing reaches GitHub
            from verifily_action.errors import not_implemented

            raise not_implemented("action: train", "train")

    monkeypatch.setattr(action, "PIPELINE", NoTrain())
    set_event(env, "pull_request", webhook_example("pull_request", "opened"))
    assert action.main() == 2
    assert "::error::`verifily action: train` is not implemented yet" in capsys.readouterr().out
    assert not fake_github.requests  # nothing was posted


def test_bad_inputs(env, capsys):
    env["monkeypatch"].setenv("INPUT_MODE", "deploy")
    set_event(env, "push", webhook_example("push"))
    assert action.main() == 2
    assert "input `mode` must be" in capsys.readouterr().out
    env["monkeypatch"].setenv("INPUT_MODE", "train-eval")
    env["monkeypatch"].setenv("INPUT_COMMENT-AUTHOR", "my app; rm -rf")
    assert action.main() == 2
    assert "input `comment-author` must be a GitHub login such as `my-app[bot]`" in capsys.readouterr().out


def test_an_app_token_updates_one_comment_also_when_graphql_is_down(fake_github, env, capsys):
    """The comment-author input names the App's bot when GraphQL cannot say who the token is."""
    fake_github.app_token("verifily-app")
    fake_github.fault("POST", r"^/graphql$", 502, times=99)
    env["monkeypatch"].setenv("INPUT_COMMENT-AUTHOR", "verifily-app[bot]")
    sleeps: list[float] = []  # the 502s are retried with backoff: recorded here instead of slept (a minute of waits)

    def client(inputs, ctx):
        from verifily_action.github.client import GitHubClient

        return GitHubClient(inputs.token or None, ctx.env.get("GITHUB_API_URL"), sleep=sleeps.append)

    env["monkeypatch"].setattr("verifily_action.action.flow._client", client)
    pr = webhook_example("pull_request", "opened")
    set_event(env, "pull_request", pr)
    assert action.main() == 0 and action.main() == 0
    assert len(fake_github.comments[pr["number"]]) == 1
    assert sleeps, "GraphQL's 502s were not retried"
    out = capsys.readouterr().out
    assert "created comment" in out and ("updated comment" in out or "unchanged comment" in out)


def _fork_run(fake, env, conclusion: str, members: dict[str, bytes] | None = None) -> tuple[dict, dict]:
    """A fork's pull request whose train-eval job uploaded its artifact and then ended with `conclusion`."""
    pr = webhook_example("pull_request", "opened")
    pr["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    head = pr["pull_request"]["head"]["sha"]
    if members is None:
        set_event(env, "pull_request", pr)
        assert action.main() == 0
        data = fake.uploads["verifily-run"]["data"]
    else:
        data = zip_of(members)
    run = fake.add_run(head, branch="changes", head_repo="mallory/Hello-World", event="pull_request")
    run["conclusion"] = conclusion
    fake.add_artifact(run["id"], "verifily-run", data)
    fake.add_pull(pr["number"], head, head_repo="mallory/Hello-World")
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(
        id=run["id"], head_sha=head, pull_requests=[], path=".github/workflows/verifily.yml", conclusion=conclusion
    )
    wr["workflow_run"]["head_repository"]["full_name"] = "mallory/Hello-World"
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    return pr, run


def test_fork_run_that_failed_on_a_gate_still_gets_its_comment(fake_github, env, capsys):
    pr, run = _fork_run(fake_github, env, "failure")
    assert action.main() == 0
    (comment,) = fake_github.comments[pr["number"]]
    assert f"[The workflow run](https://github.com/{GH_REPO}/actions/runs/{run['id']}) failed" in comment["body"]
    assert step_outputs(env)["comment-url"] == comment["html_url"]


@pytest.mark.parametrize("conclusion", ["cancelled", "skipped", "timed_out", "action_required", None])
def test_unfinished_fork_runs_get_no_comment(fake_github, env, capsys, conclusion):
    pr, _ = _fork_run(fake_github, env, conclusion)
    before = len(fake_github.requests)
    assert action.main() == 0
    assert f"the triggering run concluded {conclusion}; nothing to comment" in capsys.readouterr().out
    assert pr["number"] not in fake_github.comments and len(fake_github.requests) == before


def test_failed_run_without_a_pull_request_context_gets_no_comment(fake_github, env, capsys):
    pr, _ = _fork_run(fake_github, env, "failure", members=A_RUN)
    assert action.main() == 0
    assert "has no readable verifily-pr.json" in capsys.readouterr().out
    assert pr["number"] not in fake_github.comments


def test_example_workflows_comment_on_failed_runs_and_keep_runs_that_were_not_uploaded():
    flows = ROOT / ".github" / "workflows"
    job = yaml.safe_load((flows / "verifily-comment.yml").read_text())["jobs"]["comment"]
    cond = " ".join(job["if"].split())
    assert "github.event.workflow_run.conclusion == 'failure'" in cond
    assert "github.event.workflow_run.conclusion == 'success'" in cond
    steps = yaml.safe_load((flows / "verifily.yml").read_text())["jobs"]["train-eval"]["steps"]
    (fallback,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert fallback["if"] == (
        "always() && steps.verifily.outputs.artifact-id == '' && steps.verifily.outputs.run-dir != ''"
    )
    assert "artifact-id" in yaml.safe_load((ROOT / "action.yml").read_text())["outputs"]


def _fork_pr_run(fake, env) -> tuple[dict, dict]:
    """A fork's pull request event, and the REST run its jobs' artifacts show up under (the runtime token's run)."""
    pr = webhook_example("pull_request", "opened")
    pr["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    head = pr["pull_request"]["head"]["sha"]
    run = fake.add_run(head, branch="changes", head_repo="mallory/Hello-World", event="pull_request")
    fake.backend_runs["ce7f54c7-61c7"] = run["id"]  # RUNTIME's workflow run
    set_event(env, "pull_request", pr)
    return pr, run


def _comment_job(fake, env, pr: dict, run: dict) -> None:
    head = pr["pull_request"]["head"]["sha"]
    fake.add_pull(pr["number"], head, head_repo="mallory/Hello-World")
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(id=run["id"], head_sha=head, pull_requests=[], path=".github/workflows/verifily.yml")
    wr["workflow_run"]["head_repository"]["full_name"] = "mallory/Hello-World"
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    assert action.main() == 0


def test_a_rerun_replaces_its_artifact_and_the_comment_job_reads_the_new_attempt(fake_github, env, capsys):
    """Attempt 1 uploads (and, say, fails on a gate); attempt 2's CreateArtifact answers 409, so the stale artifact
    is deleted and uploaded again, and the fork's comment job posts attempt 2's run, not attempt 1's."""
    pr, run = _fork_pr_run(fake_github, env)
    assert action.main() == 0
    first = step_outputs(env)["artifact-id"]
    env["monkeypatch"].setenv("GITHUB_RUN_ATTEMPT", "2")
    assert action.main() == 0
    second = step_outputs(env)["artifact-id"]
    assert first.isdigit() and second.isdigit() and first != second  # not empty: no fallback upload needed
    assert f"deleted artifact `verifily-run` (id {first})" in capsys.readouterr().out
    assert [a["id"] for a in fake_github.artifacts[run["id"]]] == [int(second)]
    _comment_job(fake_github, env, pr, run)
    (comment,) = fake_github.comments[pr["number"]]
    assert f"/actions/runs/{run['id']}/artifacts/{second})" in comment["body"]
    assert fake_github.calls("GET", rf"^/artifact-blobs/{second}$", host="blob")
    assert not fake_github.calls("GET", rf"^/artifact-blobs/{first}$", host="blob")


def test_the_comment_job_reads_the_newest_of_the_artifact_and_its_fallback(fake_github, env):
    """The example workflow's actions/upload-artifact step keeps a run the Action could not upload as
    `<artifact-name>-fallback`: the comment job reads it when it is the newest."""
    pr, run = _fork_pr_run(fake_github, env)
    assert action.main() == 0  # attempt 1's artifact, `verifily-run`
    (stale,) = fake_github.artifacts[run["id"]]
    fallback = fake_github.add_artifact(run["id"], "verifily-run-fallback", fake_github.blobs[stale["id"]])
    fallback["created_at"] = "2099-01-01T00:00:00Z"  # uploaded by a later attempt
    _comment_job(fake_github, env, pr, run)
    (comment,) = fake_github.comments[pr["number"]]
    assert f"/actions/runs/{run['id']}/artifacts/{fallback['id']})" in comment["body"]
