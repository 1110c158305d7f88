"""A fork controls every byte of its run's artifact, and the comment job (`mode: comment`, with a write token) reads
it: hostile text in it must reach the comment inert, and a hostile archive, a broken eval_results.json or
predictions.jsonl, or a storage failure is one clear refusal (exit 2, nothing posted), never a crash (exit 3) and
never a leak of the signed download URL's query.

The fork's run folders are hand-built (tests/compare_fakes.py) and compared by the real pipeline; GitHub is the fake
(tests/github_fake.py), the environment the `env` fixture's (tests/action_helpers.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from verifily_action.action import flow as action

from .action_helpers import A_RUN, fast_retries, pr_context, set_event
from .compare_fakes import make_run, records
from .github_fixtures import HOSTILE_ZIPS, hostile_zip, webhook_example, zip_of

pytestmark = pytest.mark.unit

FORK = "mallory/Hello-World"
ARTIFACT = "verifily-run"
# everything GitHub would render live: a team mention, HTML, a link, an image, emphasis, an issue reference, a bare
# URL (autolinked) and a right-to-left override that makes text read as something else
EVIL = (
    "@org/team <img src=x onerror=alert(1)> [x](http://evil.example) ![i](http://evil.example/i.png) *emph* GH-1 "
    "www.evil.example \u202eevil"
)
EVIL_NAME = "@org <img src=x> [x](y) *emph* GH-1 \u202eevil"  # a folder name: no slash
EVIL_RUN = "GH-1@org.team-_x_"  # verifily-pr.json's run_name (its schema allows only [A-Za-z0-9._@-])
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def live(md: str) -> list[str]:
    """What GitHub would render live in `md`: our own links and bold text are fine, nothing from the data is."""
    found = ["bidi control"] if BIDI.search(md) else []
    # code spans show their text literally; the mermaid block is not markdown
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```mermaid\n.*?```", "", md, flags=re.S))
    checks = {
        "mention": r"(?<![A-Za-z0-9`])@(?:org|octocat)",
        "html": r"<(?:img|details|summary|a )",
        "link or image": r"\]\(\s*(?:https?://evil|y\))",
        "bare url": r"https?://evil|www\.evil",
        "emphasis": r"(?<!\\)\*emph|(?<![\\A-Za-z0-9])_x(?<!\\)_",
        "reference": r"(?<![A-Za-z0-9])GH-1",
    }
    found += [what for what, rx in checks.items() if re.search(rx, prose, re.I)]
    mermaid = "".join(re.findall(r"```mermaid\n.*?```", md, flags=re.S))
    if "<" in mermaid:  # the chart's labels are not markdown (no mentions there), but could hold HTML
        found.append("html in the chart")
    return found


def _members(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fork_run(tmp: Path, sources: dict[str, float], **kw: Any) -> Path:
    """A fork's completed, evaluated run folder: 40 examples per source, that accuracy on each."""
    sizes = dict.fromkeys(sources, 40)
    return make_run(tmp, kw.pop("name", "cand"), records(sizes, sources, seed=2), **kw)


def comment_job(
    fake,
    env,
    members: dict[str, bytes],
    *,
    baseline: bytes | None = None,
    pack: Callable[[dict[str, bytes]], bytes] = zip_of,
) -> dict[str, Any]:
    """Set up the comment job: a fork's pull request, its finished run whose artifact is `members` (with
    verifily-pr.json added) zipped by `pack`, and, with `baseline`, a base-branch run at the merge base holding
    that artifact. The real pipeline checks and compares."""
    pr = webhook_example("pull_request", "opened")
    p = pr["pull_request"]
    head = p["head"]["sha"]
    run = fake.add_run(head, branch="changes", head_repo=FORK, event="pull_request")
    data = pack({**members, "verifily-pr.json": pr_context(pr, EVIL_RUN)})
    fake.add_artifact(run["id"], ARTIFACT, data)
    pull = fake.add_pull(pr["number"], head, head_repo=FORK)
    pull["base"].update(ref=p["base"]["ref"], sha=p["base"]["sha"])
    if baseline is not None:
        base = fake.add_run(p["base"]["sha"], branch=p["base"]["ref"])
        fake.add_artifact(base["id"], ARTIFACT, baseline)
        fake.merge_bases[f"{p['base']['sha']}...{head}"] = p["base"]["sha"]
    wr = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["conclusion"] == "success")
    wr["workflow_run"].update(id=run["id"], head_sha=head, pull_requests=[], path=".github/workflows/verifily.yml")
    wr["workflow_run"]["head_repository"]["full_name"] = FORK
    set_event(env, "workflow_run", wr)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    env["monkeypatch"].setattr(action, "PIPELINE", action.Pipeline())
    return {"pr": pr, "run": run, "number": pr["number"]}


def _hostile_results(run: Path) -> None:
    """Hostile metric names and failure-breakdown text in the run's eval_results.json, still valid by its schema."""
    (results_path,) = run.glob("eval/*/eval_results.json")
    results = json.loads(results_path.read_text())
    results["metrics"].append(EVIL)
    results["directions"][EVIL] = "higher"
    for entry in results["failure_breakdown"]:
        entry["sentence"] = f"{entry['sentence']} {EVIL}"
    results_path.write_text(json.dumps(results))


# ---------------------------------------------------------------- item 10: hostile text is inert


def test_hostile_artifact_alone_is_inert_in_the_comment(fake_github, env, tmp_path, capsys):
    """No baseline: the fork's own table (metric names, tag values, eval name, failure breakdown) is shown."""
    run = fork_run(tmp_path, {"human": 0.8, EVIL: 0.3}, eval_name=EVIL_NAME)
    _hostile_results(run)
    job = comment_job(fake_github, env, _members(run))
    code = action.main()
    out = capsys.readouterr()
    assert code == 0, out
    (comment,) = fake_github.comments[job["number"]]
    body = comment["body"]
    assert "### This run on" in body and "evil.example" in body and "emph" in body, body  # shown, not live
    assert live(body) == [], body
    # the report's own code spans are kept as written
    assert "No baseline: no successful run of workflow `verifily.yml` on branch `master`" in body, body
    assert "[artifact `verifily-run`](" in body
    summary = (env["tmp"] / "summary.md").read_text()
    assert live(summary) == [] and "Traceback" not in out.err


def test_hostile_artifact_compared_with_a_baseline_is_inert_in_the_comment(fake_github, env, tmp_path, capsys):
    """With a baseline: the comparison table, summary lines, notes, the chart and the fork's gates."""
    rtl = "\u202etxt"  # a tag value a gate of the fork's config names: the rule is shown in a code span
    base = make_run(
        tmp_path / "b",
        "base",
        records(dict.fromkeys(["human", EVIL, rtl], 40), {"human": 0.8, EVIL: 0.6, rtl: 0.5}, seed=1),
    )
    run = fork_run(tmp_path, {"human": 0.8, "synthetic": 0.1, EVIL: 0.3, rtl: 0.5}, eval_name=EVIL_NAME)
    _hostile_results(run)
    gates = json.dumps(["accuracy@source=* < -100pts", f"accuracy@source={rtl}<-100pts"])
    (run / "config.yaml").write_text(f"task: classification\nmodel: m\ndataset: ds_demo@v1\ngates: {gates}\n")
    job = comment_job(fake_github, env, _members(run), baseline=zip_of(_members(base)))
    code = action.main()
    out = capsys.readouterr()
    assert code == 0, out
    (comment,) = fake_github.comments[job["number"]]
    body = comment["body"]
    assert "### Comparison against" in body and "```mermaid" in body and "evil.example" in body, body
    assert "\u2039img src=x" in body.split("```mermaid")[1] and "- ✅ gate `accuracy@source=txt<-100pts`:" in body
    assert live(body) == [], body
    assert live((env["tmp"] / "summary.md").read_text()) == []


# ---------------------------------------------------------------- items 11 and 12: one clear refusal, never a crash


def refused(fake, job, capsys, caplog=None) -> str:
    """The comment job refused: exit 2, one error annotation, nothing posted, no traceback. Returns the error."""
    code = action.main()
    out = capsys.readouterr()
    assert code == 2, out
    errors = [ln for ln in out.out.splitlines() if ln.startswith("::error")]
    assert len(errors) == 1 and "refusing to comment" in errors[0], out.out
    assert job["number"] not in fake.comments
    for text in (out.out, out.err, caplog.text if caplog else ""):
        assert "Traceback" not in text and "internal error" not in text and "verifily-comment-" not in text, text
        assert "SECRET" not in text  # a signed URL's query (the storage tests)
    return errors[0]


def _edit_results(run: Path, **changes: Any) -> None:
    (path,) = run.glob("eval/*/eval_results.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _edit_prediction(run: Path, **changes: Any) -> None:
    (path,) = run.glob("eval/*/predictions.jsonl")
    first, *rest = path.read_text().splitlines(keepends=True)
    path.write_text(json.dumps({**json.loads(first), **changes}) + "\n" + "".join(rest))


BROKEN_RUNS: dict[str, tuple[Callable[[Path], None], str]] = {
    "n is text": (lambda r: _edit_results(r, n="many"), "eval_results.json is not valid eval results"),
    "metrics not a list": (lambda r: _edit_results(r, metrics="accuracy"), "'accuracy' is not of type 'array'"),
    "slices not a list": (lambda r: _edit_results(r, slices={"source": "x"}), "slices: {'source': 'x'} is not"),
    "tags not an object": (lambda r: _edit_prediction(r, tags="human"), "predictions.jsonl:1: `tags` must be"),
    "loss not a number": (lambda r: _edit_prediction(r, loss="low"), "predictions.jsonl:1: `loss` must be"),
    "predictions elsewhere": (
        lambda r: _edit_results(r, files={"predictions": "../../../../../../etc/passwd", "hard_examples": "h"}),
        "files.predictions must name a file beside it",
    ),
    "run_meta not an object": (lambda r: (r / "run_meta.json").write_text("[]"), "run_meta.json is not a JSON object"),
}


@pytest.mark.parametrize("with_baseline", [True, False], ids=["with a baseline", "alone"])
@pytest.mark.parametrize("case", list(BROKEN_RUNS))
def test_a_fork_run_with_values_of_the_wrong_type_is_refused(fake_github, env, tmp_path, capsys, case, with_baseline):
    edit, expect = BROKEN_RUNS[case]
    run = fork_run(tmp_path, {"human": 0.8, "synthetic": 0.5})
    edit(run)
    base = make_run(
        tmp_path / "b", "base", records({"human": 40, "synthetic": 40}, {"human": 0.8, "synthetic": 0.6}, seed=1)
    )
    job = comment_job(fake_github, env, _members(run), baseline=zip_of(_members(base)) if with_baseline else None)
    error = refused(fake_github, job, capsys)
    assert f"run {job['run']['id']}'s artifact `verifily-run` is not a usable run: " in error and expect in error, error
    assert f"{EVIL_RUN}/" in error or "run_meta" in case  # the file, named inside the artifact
    assert "no baseline" not in error.lower()  # the fork's problem, not blamed on the base branch's run


@pytest.mark.parametrize(
    "kind, expect",
    list(
        zip(
            HOSTILE_ZIPS,
            ["as a file and as a folder", "the target folder itself", "is encrypted", "zip bomb"],
            strict=True,
        )
    ),
)
def test_a_hostile_archive_is_refused_in_comment_mode(fake_github, env, tmp_path, capsys, kind, expect):
    job = comment_job(fake_github, env, dict(A_RUN), pack=lambda m: hostile_zip(kind, m))
    error = refused(fake_github, job, capsys)
    assert f"run {job['run']['id']}'s artifact `verifily-run` cannot be read: " in error and expect in error, error


@pytest.mark.parametrize("fault", ["close", "cut", 500], ids=["hangs up", "cuts the download", "answers 500"])
def test_a_storage_failure_in_comment_mode_is_refused_without_the_signed_url(
    fake_github, env, tmp_path, monkeypatch, capsys, caplog, fault
):
    job = comment_job(fake_github, env, dict(A_RUN))
    aid = fake_github.artifacts[job["run"]["id"]][0]["id"]
    signed = f"{fake_github.blob_url}/artifact-blobs/{aid}?sig=SECRET-SIGNATURE&se=2099"
    fake_github.fault("GET", rf"/actions/artifacts/{aid}/zip$", 302, {"Location": signed}, times=10)
    fake_github.blob_fault = fault
    fast_retries(monkeypatch, fake_github)
    with caplog.at_level(logging.DEBUG):
        error = refused(fake_github, job, capsys, caplog)
    assert "cannot be read: downloading " in error and "SECRET" not in error
    assert "SECRET" not in caplog.text and not (env["tmp"] / "summary.md").exists()
