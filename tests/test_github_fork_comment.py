"""The comment job (`mode: comment`) for fork and Dependabot pull requests: a head that moved on since the run is a
notice, the pull request job's `fail-on` and `slice-by` travel in verifily-pr.json (checked as hostile data) and are
used, the base repository's config gates always apply, and the example workflows say so."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
import yaml

from verifily_action.action import flow as action
from verifily_action.action.inputs import fail_on_rules

from .action_helpers import A_RUN, GH_REPO, pr_context, set_event, step_outputs
from .compare_fakes import make_run, records
from .github_fake import TOKEN
from .github_fixtures import webhook_example, zip_of
from .paths import REPO as ROOT

pytestmark = pytest.mark.unit

FORK = "mallory/Hello-World"
ARTIFACT = "verifily-run"
BASE_GATE = "accuracy@source=synthetic<-5pts"


def _uploaded_pr_context(fake) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(fake.uploads[ARTIFACT]["data"])) as z:
        return json.loads(z.read("verifily-pr.json"))


def _fork_pull_request(fake, env, **inputs: str) -> tuple[dict, bytes]:
    """A fork's pull request job (the stub pipeline) with `inputs`; its uploaded artifact."""
    pr = webhook_example("pull_request", "opened")
    pr["pull_request"]["head"]["repo"]["full_name"] = FORK
    for name, value in inputs.items():
        env["monkeypatch"].setenv(f"INPUT_{name.upper()}", value)
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    for name in inputs:
        env["monkeypatch"].delenv(f"INPUT_{name.upper()}")
    return pr, fake.uploads[ARTIFACT]["data"]


def _workflow_run(fake, env, pr: dict, data: bytes, *, pull_head: str | None = None, **wr_fields: Any) -> dict:
    """The fork run finished with artifact `data`; the pull request's head is `pull_head` now (default: the run's
    commit); the comment job's event is set."""
    head = pr["pull_request"]["head"]["sha"]
    run = fake.add_run(head, branch="changes", head_repo=FORK, event="pull_request")
    fake.add_artifact(run["id"], ARTIFACT, data)
    pull = fake.add_pull(pr["number"], pull_head or head, head_repo=FORK)
    pull["head"]["ref"] = "changes"
    pull["base"].update(ref=pr["pull_request"]["base"]["ref"], sha=pr["pull_request"]["base"]["sha"])
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(
        id=run["id"], head_sha=head, head_branch="changes", pull_requests=[], path=".github/workflows/verifily.yml"
    )
    wr["workflow_run"]["head_repository"]["full_name"] = FORK
    wr["workflow_run"].update(wr_fields)
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    return run


def test_a_head_that_moved_on_is_a_notice_and_exit_0(fake_github, env, capsys):
    pr, data = _fork_pull_request(fake_github, env)
    run = _workflow_run(fake_github, env, pr, data, pull_head="e" * 40)
    before = len(fake_github.requests)
    assert action.main() == 0
    out = capsys.readouterr().out
    assert f"::notice::pull request #{pr['number']} moved on since run {run['id']}: its head is eeeeeeeeeeee" in out
    assert "::error" not in out and pr["number"] not in fake_github.comments
    assert not [r for r in fake_github.requests[before:] if "/runs?" in r.path or r.path.endswith("/runs")]


def test_a_pull_request_from_elsewhere_that_moved_is_still_refused(fake_github, env, capsys):
    pr, data = _fork_pull_request(fake_github, env)
    _workflow_run(fake_github, env, pr, data, pull_head="e" * 40)
    fake_github.pulls[pr["number"]]["head"]["ref"] = "other-branch"  # not the run's branch: another PR's number
    assert action.main() == 2
    assert "refusing to comment" in capsys.readouterr().out and pr["number"] not in fake_github.comments


def test_the_fork_jobs_fail_on_and_slice_by_are_recorded_and_used(fake_github, env):
    rules = 'accuracy@source="a,b"<-2pts, macro_f1<-0.1'
    pr, data = _fork_pull_request(fake_github, env, **{"fail-on": rules, "slice-by": "source,origin=*"})
    ctx = _uploaded_pr_context(fake_github)
    assert ctx["fail_on"] == ['accuracy@source="a,b"<-2pts', "macro_f1<-0.1"]
    assert ctx["slice_by"] == ["source", "origin=*"]
    seen: list[Any] = []
    stub = env["stub"]
    compare = stub.compare
    env["monkeypatch"].setattr(stub, "compare", lambda r, b, inputs: seen.append(inputs) or compare(r, b, inputs))
    (env["ws"] / "train.yaml").write_text(f"task: classification\nmodel: m\ndataset: d@v1\ngates: ['{BASE_GATE}']\n")
    env["monkeypatch"].setenv("INPUT_FAIL-ON", "f1<-0.5")  # the comment job's own rule
    _workflow_run(fake_github, env, pr, data)
    assert action.main() == 0
    (used,) = seen[-1:]
    assert fail_on_rules(used.fail_on) == ["f1<-0.5", *ctx["fail_on"], BASE_GATE]
    assert used.slice_by == ["source", "origin=*"]
    assert len(fake_github.comments[pr["number"]]) == 1


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("fail_on", ["@org/team <img src=x>"], "bad gate rule"),
        ("fail_on", ["accuracy<-1pts\n<img src=x>"], "does not match"),
        ("fail_on", ["accuracy<-1pts"] * 51, "is too long"),
        ("slice_by", ["@org/team"], "slice_by"),
        ("slice_by", "source", "is not of type 'array'"),
    ],
)
def test_hostile_gates_or_slices_in_the_artifact_are_refused(fake_github, env, capsys, field, value, why):
    pr, data = _fork_pull_request(fake_github, env)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    ctx = json.loads(members["verifily-pr.json"])
    members["verifily-pr.json"] = json.dumps({**ctx, field: value}).encode()
    _workflow_run(fake_github, env, pr, zip_of(members))
    assert action.main() == 2
    out = capsys.readouterr().out
    (error,) = [ln for ln in out.splitlines() if ln.startswith("::error")]
    assert "verifily-pr.json in run" in error and why in error and "refusing to comment" in error, error
    assert pr["number"] not in fake_github.comments


def test_a_fork_cannot_drop_the_base_repositorys_gates(fake_github, env, tmp_path, capsys):
    """The real comparison: the fork's run carries no gates and its job recorded a lenient rule; the base branch's
    config gate still fails in the comment, beside the fork's own rule."""
    base = make_run(
        tmp_path / "b", "base", records({"human": 40, "synthetic": 40}, {"human": 0.8, "synthetic": 0.8}, seed=1)
    )
    fork = make_run(
        tmp_path / "f", "cand", records({"human": 40, "synthetic": 40}, {"human": 0.8, "synthetic": 0.2}, seed=2)
    )
    members = {p.relative_to(fork).as_posix(): p.read_bytes() for p in fork.rglob("*") if p.is_file()}
    pr = webhook_example("pull_request", "opened")
    p = pr["pull_request"]
    members["verifily-pr.json"] = pr_context(pr, "cand", fail_on=["accuracy@source=human<-100pts"], slice_by=["source"])
    base_run = fake_github.add_run(p["base"]["sha"], branch=p["base"]["ref"])
    fake_github.add_artifact(
        base_run["id"],
        ARTIFACT,
        zip_of({q.relative_to(base).as_posix(): q.read_bytes() for q in base.rglob("*") if q.is_file()}),
    )
    fake_github.merge_bases[f"{p['base']['sha']}...{p['head']['sha']}"] = p["base"]["sha"]
    (env["ws"] / "train.yaml").write_text(f"task: classification\nmodel: m\ndataset: d@v1\ngates: ['{BASE_GATE}']\n")
    env["monkeypatch"].setattr(action, "PIPELINE", action.Pipeline())
    _workflow_run(fake_github, env, pr, zip_of(members))
    code = action.main()
    out = capsys.readouterr().out
    assert code == 0, out  # the comment job shows the gates; the pull request's own job decides
    body = fake_github.comments[pr["number"]][0]["body"]
    assert f"- ❌ gate `{BASE_GATE}`" in body and "- ✅ gate `accuracy@source=human<-100pts`" in body, body
    assert body.count("gate `") == 2


def test_dependabot_gets_its_comment_through_the_workflow_run_job(fake_github, env, capsys):
    fake_github.read_only_tokens.add(TOKEN)  # Dependabot's pull_request jobs get a read-only token
    env["monkeypatch"].setenv("GITHUB_ACTOR", "dependabot[bot]")
    pr = webhook_example("pull_request", "opened")
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    assert "::notice::pull request from Dependabot (a read-only token)" in out and "::warning::" not in out
    assert not fake_github.calls("POST", "/comments$") and pr["number"] not in fake_github.comments
    data = fake_github.uploads[ARTIFACT]["data"]
    fake_github.read_only_tokens.clear()  # the workflow_run job of the base repository has a write token
    head = pr["pull_request"]["head"]["sha"]
    run = fake_github.add_run(head, branch=pr["pull_request"]["head"]["ref"], event="pull_request")
    fake_github.add_artifact(run["id"], ARTIFACT, data)
    fake_github.add_pull(pr["number"], head)
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(
        id=run["id"], head_sha=head, pull_requests=[{"number": pr["number"]}], path=".github/workflows/verifily.yml"
    )
    wr["workflow_run"]["head_repository"]["full_name"] = GH_REPO
    wr["workflow_run"]["actor"]["login"] = "dependabot[bot]"
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    assert action.main() == 0
    (comment,) = fake_github.comments[pr["number"]]
    assert step_outputs(env)["comment-url"] == comment["html_url"]


def test_an_artifact_without_gates_or_slices_still_gets_its_comment(fake_github, env):
    """An artifact from before fail_on/slice_by were recorded: the comment job's own inputs apply."""
    pr, data = _fork_pull_request(fake_github, env)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        ctx = json.loads(z.read("verifily-pr.json"))
    old = {k: v for k, v in ctx.items() if k not in ("fail_on", "slice_by")}
    _workflow_run(fake_github, env, pr, zip_of({**A_RUN, "verifily-pr.json": json.dumps(old).encode()}))
    assert action.main() == 0
    assert len(fake_github.comments[pr["number"]]) == 1


def _yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def test_the_example_workflows_keep_baselines_and_run_the_comment_job_safely():
    train = _yaml("verifily.yml")
    assert train["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    comment = _yaml("verifily-comment.yml")
    assert comment["permissions"]["contents"] == "read"
    job = comment["jobs"]["comment"]
    checkout = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout")]
    assert checkout and all(s["with"]["persist-credentials"] is False for s in checkout)
    group = job["concurrency"]["group"]
    assert "workflow_run.head_repository.full_name" in group and "workflow_run.head_branch" in group
    assert "pull_requests" not in group  # empty for forks
    cond = " ".join(job["if"].split())
    assert "github.event.workflow_run.actor.login == 'dependabot[bot]'" in cond
    assert "github.event.workflow_run.head_repository.full_name != github.repository" in cond


def test_the_pr_context_schema_bounds_what_a_fork_records():
    schema = json.loads((ROOT / "schemas" / "pr_context.schema.json").read_text())
    for field in ("fail_on", "slice_by"):
        prop = schema["properties"][field]
        assert prop["maxItems"] and prop["items"]["maxLength"] and field not in schema["required"]
