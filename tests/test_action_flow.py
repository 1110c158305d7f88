"""The Action end to end: `python entrypoint.py` with real webhook payloads against the fake GitHub, real training.

One workspace plays a repository's history, built once for the module (training is the slow part):
1. a push to master trains all-MiniLM-L6-v2 + LoRA for 3 steps on a small fixed subset of the real ds_demo v1,
   evaluates it per `source` slice and uploads the run folder as the artifact (no comment: it is the baseline);
2. a pull request changes the config to ds_demo v2: trains, evaluates, finds the push run as the merge-base
   baseline, downloads and safely extracts its artifact, compares and posts ONE sticky comment;
3. another push to the pull request: the cached run (same run key) is reused and the same comment updated;
4. the same with a `fail-on` rule that matches: exit 1, with comment, summary, artifact and outputs still written;
5. baselines that cannot be used (a zip-slip artifact; an artifact that holds no run): exit 0, "No baseline: why";
6. a pull request from a fork, whose job gets a read-only token: the cached run is reused, the report goes to the
   job summary and the artifact (with the pull request's context) is uploaded, no comment; then the `workflow_run`
   job (`mode: comment`, write token) reads that artifact and posts the comment on the fork's pull request.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .action_runner import ARTIFACT, NAME, Repo, out_id, show
from .github_fake import TOKEN, FakeGitHub
from .github_fixtures import openapi, webhook_example, zip_of

pytestmark = pytest.mark.integration

# a rule that always holds (a change in accuracy is never below -100 points): the gate must fail the job
ALWAYS = "accuracy@source=human>=-1"
FORK = "mallory/Hello-World"
READ_ONLY = "ghs_ForkReadOnlyTokenDoNotLeak0123456789"  # what a fork's pull_request job gets as GITHUB_TOKEN


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    openapi()  # skip (or fail in CI) when the npm fixtures are missing
    fake = FakeGitHub(NAME)
    try:
        repo = Repo(tmp_path_factory.mktemp("action_flow"), fake)
        steps: dict[str, Any] = {"repo": repo, "fake": fake}
        push = webhook_example("push", pred=lambda x: x["ref"] == "refs/heads/master")
        steps["push"] = r = repo.run("push", push, "push")
        assert r["rc"] == 0, show(r)
        base_run = fake.add_run(push["after"], branch="master")
        fake.add_artifact(base_run["id"], ARTIFACT, r["upload"]["data"])
        steps["base_run"] = base_run

        repo.configure("v2")  # the pull request moves training to the next dataset version
        pr = webhook_example("pull_request", "synchronize")
        p = pr["pull_request"]
        fake.merge_bases[f"{p['base']['sha']}...{p['head']['sha']}"] = base_run["head_sha"]
        steps["pr"] = pr
        steps["pr1"] = repo.run("pull_request", pr, "pr1")
        steps["pr2"] = repo.run("pull_request", pr, "pr2")
        steps["gate"] = repo.run("pull_request", pr, "gate", fail_on=ALWAYS)
        # baselines that were found but cannot be used, chosen by run id (`baseline: <id>`)
        bad = {"slip": {"../../escaped.txt": b"x"}, "notrun": {"notes.txt": b"not a run folder"}}
        for step, members in bad.items():
            run = fake.add_run(push["after"], branch="master", created_at="2023-01-01T00:00:00Z")
            fake.add_artifact(run["id"], ARTIFACT, zip_of(members))
            steps[f"{step}_run"] = run
            steps[step] = repo.run("pull_request", pr, step, baseline=str(run["id"]))
        if os.environ.get("VERIFILY_FLOW_DUMP"):  # while developing: what each run printed and posted
            dump = Path(os.environ["VERIFILY_FLOW_DUMP"])
            dump.write_text(json.dumps({k: v for k, v in steps.items() if k not in ("repo", "fake")}, default=repr))
        yield steps
    finally:
        fake.close()
    assert not fake.violations, "requests or answers that break GitHub's API description:\n" + "\n".join(
        fake.violations
    )


def test_push_uploads_the_baseline_without_commenting(flow):
    r = flow["push"]
    assert r["rc"] == 0, show(r)
    assert r["bodies"] == {} and r["to_comment"] is None
    out = r["outputs"]
    run_dir = flow["repo"].ws / out["run-dir"]
    meta = json.loads((run_dir / "run_meta.json").read_text())
    assert meta["status"] == "completed" and meta["dataset"]["ref"] == "ds_demo@v1"
    assert out["run-key"] == meta["run_key"]
    results = json.loads((flow["repo"].ws / out["metrics-json"]).read_text())
    assert results["eval_name"] == "ds_demo@v1-eval" and [s["key"] for s in results["slices"]] == [
        {"source": "human"},
        {"source": "synthetic"},
    ]
    assert out["comparison-json"] == "" and out["regressions"] == "0"
    assert "itself the baseline" in r["summary"] and "source=synthetic" in r["summary"]
    assert r["upload"]["finalize"]["hash"].startswith("sha256:") and r["creates"] == 1


def test_pull_request_compares_with_the_downloaded_baseline_and_comments_once(flow):
    r, fake, pr = flow["pr1"], flow["fake"], flow["pr"]
    assert r["rc"] == 0, show(r)
    comments = fake.comments[pr["number"]]
    assert len(r["bodies"][pr["number"]]) == 1
    body = r["bodies"][pr["number"]][0]
    base = flow["base_run"]
    assert f"[run {base['id']}]" in body and base["head_sha"][:12] in body and "merge-base" in body
    # the sliced deltas table: one row per slice and metric, with the baseline and this run side by side
    table = [ln for ln in body.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| slice | metric | baseline | n | ds_demo-v2-classification-")
    for name in ("overall", "source=human", "source=synthetic"):
        assert any(ln.startswith(f"| {name} | accuracy |") for ln in table), body
    assert "```mermaid" in body and "Data: " in body
    # the candidate's failure breakdown: tag values holding more than their share of the errors
    assert "**Where this run fails**" in body, body
    fails = body.split("**Where this run fails**", 1)[1].split("\n---\n", 1)[0]
    assert re.search(r"^- .*source", fails, re.M), fails
    # the artifact this run uploaded (before posting) is linked
    assert out_id(r) and f"/actions/runs/{r['run_id']}/artifacts/{out_id(r)})" in body
    assert fake.calls("GET", r"/actions/artifacts/\d+/zip$") and fake.calls("GET", host="blob")
    out = r["outputs"]
    assert out["comment-url"] == comments[0]["html_url"]
    comparison = json.loads((flow["repo"].ws / out["comparison-json"]).read_text())
    assert [x["train_dataset"]["ref"] for x in comparison["runs"]] == ["ds_demo@v1", "ds_demo@v2"]
    assert int(out["regressions"]) == sum(
        1 for row in comparison["rows"] for d in row["deltas"] if d["significant"] and not d["improved"]
    )
    assert body.split("\n", 1)[1].strip() in r["summary"].replace("\r", "")  # the same report in the job summary
    # the report names the run it is on by the root hash of the run folder it uploaded
    with zipfile.ZipFile(io.BytesIO(r["upload"]["data"])) as z:
        root = json.loads(z.read("run_meta.json"))["root_hash"]
    assert body.rstrip().endswith(f" · root hash `{root}`"), body[-300:]
    # the dashboard's page beside the run in the artifact, named by the comment: its chart holds this comparison
    with zipfile.ZipFile(io.BytesIO(r["upload"]["data"])) as z:
        page = z.read("verifily-report.html").decode()
    assert "(dashboard: open `verifily-report.html` from it)" in body
    chart = json.loads(re.search(r'<script type="application/json" id="delta-data">(.*?)</script>', page, re.S)[1])
    deltas = [row["deltas"][0]["delta"] for row in comparison["rows"] if row["metric"] == chart["metrics"][0]["metric"]]
    assert chart["metrics"][0]["series"][0]["deltas"] == deltas
    print(
        f"\nAction start-to-comment (python entrypoint.py, train 3 steps + eval 80 rows + baseline + compare): "
        f"{r['to_comment']:.1f}s of {r['seconds']:.1f}s total",
        file=sys.stderr,
    )


def test_second_run_reuses_the_cached_run_and_updates_the_same_comment(flow):
    r, fake, pr = flow["pr2"], flow["fake"], flow["pr"]
    assert r["rc"] == 0, show(r)
    assert "cached: run" in r["out"] and "reusing the cached run's evaluation" in r["out"]
    assert r["outputs"]["run-dir"] == flow["pr1"]["outputs"]["run-dir"]
    assert r["outputs"]["run-key"] == flow["pr1"]["outputs"]["run-key"]
    assert len(fake.comments[pr["number"]]) == 1
    assert len(fake.calls("PATCH", r"/issues/comments/\d+$")) >= 1
    assert r["outputs"]["comment-url"] == flow["pr1"]["outputs"]["comment-url"]
    assert r["creates"] == flow["pr1"]["creates"] + 1  # the artifact is uploaded on every run


def test_matching_fail_on_rule_fails_last(flow):
    r, fake, pr = flow["gate"], flow["fake"], flow["pr"]
    assert r["rc"] == 1, show(r)
    assert re.search(r"^::error::1 gate rule\(s\) failed: ", r["out"], re.M), r["out"]
    (comment,) = fake.comments[pr["number"]]
    (body,) = r["bodies"][pr["number"]]
    assert f"❌ gate `{ALWAYS}`" in body  # the comment was updated before the exit code
    assert f"❌ gate `{ALWAYS}`" in r["summary"]
    assert r["creates"] == flow["pr2"]["creates"] + 1 and r["upload"]["finalize"]
    assert r["outputs"]["comment-url"] == comment["html_url"] and r["outputs"]["comparison-json"]
    gates = json.loads((flow["repo"].ws / r["outputs"]["comparison-json"]).read_text())["gates"]
    assert [(g["rule"], g["failed"]) for g in gates] == [(ALWAYS, True)]


@pytest.mark.parametrize(
    "step, why",
    [
        ("slip", "could not be fetched: refusing archive member '../../escaped.txt': it climbs out"),
        ("notrun", "cannot be compared with this run: the baseline folder is not a run folder"),
    ],
)
def test_a_baseline_that_cannot_be_used_is_no_baseline(flow, step, why):
    r, pr, run = flow[step], flow["pr"], flow[f"{step}_run"]
    assert r["rc"] == 0, show(r)
    (body,) = r["bodies"][pr["number"]]
    inert = why.replace("'", "&#x27;")  # as report.escape.inert shows the member name
    head = next(ln for ln in body.splitlines() if ln.startswith("No baseline: "))
    assert f"run {run['id']}" in head and (why in head or inert in head), head
    assert head in r["summary"]
    assert re.search(rf"^::warning::no baseline: .*run {run['id']}", r["out"], re.M), r["out"]
    # this run's own metrics are still reported, and nothing escaped the extraction folder
    assert "### This run on ds_demo" in body and "| source=human |" in body, body
    assert not (Path(tempfile.gettempdir()) / "escaped.txt").exists()  # ../../ from <tmp>/verifily-baseline-*/baseline
    assert r["outputs"]["comparison-json"] == "" and r["outputs"]["artifact-id"]


def test_token_is_masked_and_never_printed(flow, fork):
    runs = [(flow[s], TOKEN) for s in ("push", "pr1", "pr2", "gate", "slip", "notrun")]
    for r, token in [*runs, (fork["job"], READ_ONLY), (fork["comment"], TOKEN)]:
        assert r["out"].startswith(f"::add-mask::{token}\n"), r["out"][:200]
        assert token not in r["out"].replace(f"::add-mask::{token}", "") and token not in r["err"]
        assert "Traceback" not in r["err"]


def test_cached_evaluation_is_reused_only_for_the_same_slices(flow):
    from verifily_action.action.stages import reusable_eval

    run_dir = flow["repo"].ws / flow["pr1"]["outputs"]["run-dir"]
    done = run_dir / "eval" / "ds_demo@v2-eval"
    assert reusable_eval(run_dir, None) == done  # the config's eval.slice_by: [source]
    assert reusable_eval(run_dir, ["source"]) == done
    assert reusable_eval(run_dir, ["origin"]) is None and reusable_eval(run_dir, ["source", "origin"]) is None


def test_text_from_data_is_inert_in_the_report(flow):
    from verifily_action.action.inputs import fail_on_rules
    from verifily_action.report import comparison as render
    from verifily_action.report.results import results_markdown

    comparison = json.loads((flow["repo"].ws / flow["pr1"]["outputs"]["comparison-json"]).read_text())
    evil = "@octocat <img src=x onerror=alert(1)> | `x` #1"
    row = next(r for r in comparison["rows"] if r["slice"])
    row["slice"] = {"source": evil}
    comparison["summary"].append(f"accuracy on source={evil} regressed")
    md = render.markdown(comparison)
    assert "@octocat" not in md and "<img" not in md and "#1" not in md and "`x`" not in md
    widths = {len(re.findall(r"(?<!\\)\|", ln)) for ln in md.splitlines() if ln.startswith("| ")}
    assert len(widths) == 1, md  # the pipe in the tag value did not add a column
    results = json.loads((flow["repo"].ws / flow["push"]["outputs"]["metrics-json"]).read_text())
    results["slices"][0]["key"] = {"source": evil}
    own = results_markdown(results)
    assert "@octocat" not in own and "<img" not in own and own.count("\n| ") == 4
    assert fail_on_rules("accuracy<-1pts\nmacro_f1@source=human<-0.02, loss>0.1\n") == [
        "accuracy<-1pts",
        "macro_f1@source=human<-0.02",
        "loss>0.1",
    ]


def _forked(pr: dict[str, Any]) -> dict[str, Any]:
    """The flow's pull_request payload as GitHub sends it for another pull request, opened from a fork."""
    pr = copy.deepcopy(pr)
    p = pr["pull_request"]
    pr["number"] = p["number"] = pr["number"] + 100
    head = p["head"]
    head.update(sha=hashlib.sha1(b"a commit in the fork").hexdigest(), label=f"mallory:{head['ref']}")
    head["user"]["login"] = head["repo"]["owner"]["login"] = "mallory"
    head["repo"].update(full_name=FORK, fork=True)
    return pr


@pytest.fixture(scope="module")
def fork(flow):
    """Step 6: the fork's pull_request job, then the workflow_run job that comments for it."""
    repo, fake = flow["repo"], flow["fake"]
    pr = _forked(flow["pr"])
    p, number = pr["pull_request"], pr["number"]
    head = p["head"]["sha"]
    fake.merge_bases[f"{p['base']['sha']}...{head}"] = flow["base_run"]["head_sha"]
    fake.read_only_tokens.add(READ_ONLY)
    steps: dict[str, Any] = {"pr": pr, "creates": len(fake.calls("POST", "CreateArtifact$"))}
    steps["job"] = r = repo.run("pull_request", pr, "fork", github_token=READ_ONLY)
    assert r["rc"] == 0, show(r)
    # GitHub records that job as a pull_request run from the fork, holding the artifact it uploaded
    run = fake.add_run(head, branch=p["head"]["ref"], head_repo=FORK, event="pull_request", run_id=int(r["run_id"]))
    steps["artifact"] = fake.add_artifact(run["id"], ARTIFACT, r["upload"]["data"])
    pull = fake.add_pull(number, head, head_repo=FORK)
    pull["base"].update(ref=p["base"]["ref"], sha=p["base"]["sha"])
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    w = wr["workflow_run"]
    w.update(id=run["id"], head_sha=head, head_branch=p["head"]["ref"], event="pull_request", pull_requests=[])
    w["path"] = ".github/workflows/verifily.yml"
    w["head_repository"]["full_name"] = FORK
    w["repository"]["full_name"] = wr["repository"]["full_name"] = NAME
    steps["comment"] = repo.run("workflow_run", wr, "fork-comment", mode="comment")
    return steps


def test_fork_pull_request_degrades_to_summary_and_artifact(flow, fork):
    r, pr, fake = fork["job"], fork["pr"], flow["fake"]
    assert r["rc"] == 0, show(r)
    assert "cached: run" in r["out"] and "reusing the cached run's evaluation" in r["out"]  # no training added
    assert "::notice::pull request from a fork" in r["out"]
    # no comment from this job: it did not try, and its token could not have (the fake answers writes with 403)
    assert pr["number"] not in r["bodies"] and r["outputs"]["comment-url"] == ""
    api = [x for x in r["requests"] if x.host == "api" and not x.path.startswith("/twirp/")]
    assert api and {x.method for x in api} == {"GET"}
    assert {x.headers["authorization"] for x in api} == {f"Bearer {READ_ONLY}"}
    from verifily_action.github.client import GitHubClient, GitHubError

    with pytest.raises(GitHubError) as denied:
        GitHubClient(READ_ONLY, fake.api_url).request(
            "POST", f"repos/{NAME}/issues/{pr['number']}/comments", json={"body": "x"}
        )
    assert denied.value.status == 403
    # the report, with the comparison against the merge-base baseline, is in the job summary
    base = flow["base_run"]
    assert r["summary"].startswith("## Verifily Train") and f"[run {base['id']}]" in r["summary"], r["summary"]
    assert "| overall | accuracy |" in r["summary"] and r["outputs"]["comparison-json"]
    # the artifact is uploaded, with the pull request's context for the comment job
    assert r["creates"] == fork["creates"] + 1 and r["upload"]["finalize"] and out_id(r)
    with zipfile.ZipFile(io.BytesIO(r["upload"]["data"])) as zf:
        info = json.loads(zf.read("verifily-pr.json"))
        assert "run_meta.json" in zf.namelist()
    assert info["pr_number"] == pr["number"] and info["head_sha"] == pr["pull_request"]["head"]["sha"]
    assert info["repository"] == NAME and info["base_ref"] == pr["pull_request"]["base"]["ref"]
    assert info["run_name"] == Path(r["outputs"]["run-dir"]).name


def test_workflow_run_job_comments_on_the_fork_pull_request(flow, fork):
    r, pr, fake = fork["comment"], fork["pr"], flow["fake"]
    assert r["rc"] == 0, show(r)
    (comment,) = fake.comments[pr["number"]]
    (body,) = r["bodies"][pr["number"]]
    assert r["outputs"]["comment-url"] == comment["html_url"]
    posts = [x for x in r["requests"] if x.method == "POST" and x.path.endswith(f"/issues/{pr['number']}/comments")]
    assert [x.headers["authorization"] for x in posts] == [f"Bearer {TOKEN}"]
    # the same comparison the fork's job computed, linked to the fork's run and its artifact
    # (the header too: the candidate is labelled by the run's own folder name, carried in verifily-pr.json)
    table = [ln for ln in body.splitlines() if ln.startswith("| ")]
    assert len(table) > 3 and table == [ln for ln in fork["job"]["summary"].splitlines() if ln.startswith("| ")]
    run_id, art = fork["job"]["run_id"], fork["artifact"]["id"]
    assert f"(https://github.com/{NAME}/actions/runs/{run_id}/artifacts/{art})" in body
    assert "(dashboard: open `verifily-report.html` from it)" in body  # the fork's job added the page
    assert f"[run {flow['base_run']['id']}]" in body and "merge-base" in body and "⚠️" not in body
    assert body.split("\n", 1)[1].strip() in r["summary"].replace("\r", "")
