"""The Action degrades instead of failing: a baseline that cannot be fetched or compared is "No baseline: why", and
a failed artifact upload is a warning; the report, the summary and the outputs still go out. Same stub pipeline and
fake GitHub as tests/test_github_action.py (tests/action_helpers.py).
"""

from __future__ import annotations

import functools
import io
import logging
import re
import socket
import tempfile
import zipfile
from pathlib import Path

import pytest

from verifily_action.action import flow as action
from verifily_action.errors import VerifilyError
from verifily_action.github import artifacts

from .action_helpers import A_RUN, fast_retries, set_event, step_outputs
from .github_fake import TOKEN
from .github_fixtures import HOSTILE_ZIPS, hostile_zip, webhook_example, zip_of

pytestmark = pytest.mark.unit


def _pull_request_on(fake, artifact: bytes) -> tuple[dict, dict]:
    """A base-branch run with `artifact` at the pull request's merge base, and the pull request's event."""
    pr = webhook_example("pull_request", "synchronize")
    p = pr["pull_request"]
    run = fake.add_run(p["base"]["sha"], branch="master")
    fake.add_artifact(run["id"], "verifily-run", artifact)
    fake.merge_bases[f"{p['base']['sha']}...{p['head']['sha']}"] = p["base"]["sha"]
    return run, pr


@pytest.mark.parametrize(
    "case, expect",
    [
        ("zip-slip", "climbs out of the target folder"),
        ("symlink", "is a symbolic link"),
        ("not a zip", "not a readable zip archive"),
        ("expired", "answered 410"),  # expired or deleted between listing and download
        ("deleted", "answered 404"),
        ("gone from storage", "HTTP 404"),
        ("server errors", "answered 503"),  # after the client's retries
    ],
)
def test_a_baseline_that_cannot_be_fetched_is_no_baseline(fake_github, env, monkeypatch, capsys, case, expect):
    data = {
        "zip-slip": zip_of({**A_RUN, "../../escaped.txt": b"x"}),
        "not a zip": b"PK\x03\x04 truncated",
    }.get(case, zip_of(A_RUN))
    if case == "symlink":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            link = zipfile.ZipInfo("run_meta.json")
            link.external_attr = (0o120777 << 16) | 0x20
            zf.writestr(link, "/etc/passwd")
        data = buf.getvalue()
    run, pr = _pull_request_on(fake_github, data)
    aid = fake_github.artifacts[run["id"]][0]["id"]
    if case == "expired":
        fake_github.fault("GET", rf"/actions/artifacts/{aid}/zip$", 410)
    if case == "deleted":
        del fake_github.blobs[aid]
    if case == "gone from storage":
        del fake_github.blobs[aid]  # the API still redirects, to a blob that is gone
        fake_github.fault(
            "GET",
            rf"/actions/artifacts/{aid}/zip$",
            302,
            {"Location": f"{fake_github.blob_url}/artifact-blobs/{aid}?sig=s"},
        )
    if case == "server errors":
        fake_github.fault("GET", rf"/actions/artifacts/{aid}/zip$", 503, times=100)
        sleeps = fast_retries(monkeypatch, fake_github)
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    body = fake_github.comments[pr["number"]][0]["body"]
    reason = f"the artifact `verifily-run` of run {run['id']} could not be fetched"
    assert f"No baseline: {reason}" in body and expect in body, body
    assert f"No baseline: {reason}" in (env["tmp"] / "summary.md").read_text()
    assert re.search(rf"^::warning::no baseline: the artifact `verifily-run` of run {run['id']} .*{expect}", out, re.M)
    assert env["stub"].baselines == [None]
    assert not (Path(tempfile.gettempdir()) / "escaped.txt").exists()  # ../../ from <tmp>/verifily-baseline-*/baseline
    assert TOKEN not in out.replace(f"::add-mask::{TOKEN}", "")
    assert step_outputs(env)["comment-url"] and step_outputs(env)["artifact-id"]
    if case == "server errors":
        assert len(sleeps) >= 3  # retried before giving up


@pytest.mark.parametrize(
    "kind, expect",
    list(
        zip(
            HOSTILE_ZIPS,
            ["as a file and as a folder", "names the target folder itself", "is encrypted", "zip bomb"],
            strict=True,
        )
    ),
)
def test_a_hostile_but_well_formed_archive_is_no_baseline(fake_github, env, capsys, kind, expect):
    run, pr = _pull_request_on(fake_github, hostile_zip(kind, A_RUN))
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr()
    body = fake_github.comments[pr["number"]][0]["body"]
    head = next(ln for ln in body.splitlines() if ln.startswith("No baseline: "))
    assert f"the artifact `verifily-run` of run {run['id']} could not be fetched: " in head and expect in head, head
    assert re.search(
        rf"^::warning::no baseline: the artifact `verifily-run` of run {run['id']} .*{expect}", out.out, re.M
    )
    assert env["stub"].baselines == [None] and step_outputs(env)["comment-url"]
    assert "Traceback" not in out.err and "internal error" not in out.out


SIGNED = "sig=SECRET-SIGNATURE"


@pytest.mark.parametrize(
    "fault, expect",
    [("close", "ConnectionError"), ("cut", "ChunkedEncodingError"), (500, "HTTP 500")],
    ids=["hangs up", "cuts the download", "answers 500"],
)
def test_a_storage_failure_is_no_baseline_and_never_shows_the_signed_url(
    fake_github, env, monkeypatch, capsys, caplog, fault, expect
):
    run, pr = _pull_request_on(fake_github, zip_of(A_RUN))
    aid = fake_github.artifacts[run["id"]][0]["id"]
    signed = f"{fake_github.blob_url}/artifact-blobs/{aid}?{SIGNED}&se=2099"
    fake_github.fault("GET", rf"/actions/artifacts/{aid}/zip$", 302, {"Location": signed}, times=10)
    fake_github.blob_fault = fault
    sleeps = fast_retries(monkeypatch, fake_github)
    set_event(env, "pull_request", pr)
    with caplog.at_level(logging.DEBUG):
        assert action.main() == 0
    out = capsys.readouterr()
    body = fake_github.comments[pr["number"]][0]["body"]
    head = next(ln for ln in body.splitlines() if ln.startswith("No baseline: ")).replace(
        "\u200d", ""
    )  # (an inert URL)
    assert f"of run {run['id']} could not be fetched: downloading {fake_github.blob_url}/artifact-blobs/" in head
    assert expect in head, head
    summary = (env["tmp"] / "summary.md").read_text()
    for text in (out.out, out.err, summary, body, caplog.text):
        assert "SECRET" not in text, text
    assert "Traceback" not in out.err and env["stub"].baselines == [None]
    assert fake_github.calls("GET", "/artifact-blobs/", host="blob")  # the storage host was asked
    if fault != "cut":
        assert sleeps  # retried with backoff first


SECONDARY = {"message": "You have exceeded a secondary rate limit.", "documentation_url": "https://docs.github.com"}


@pytest.mark.parametrize(
    "headers, waits, why",
    [
        ({"Retry-After": "3600"}, [], "rate limited: GitHub asks to wait 3600 s, more than the cap 300 s"),
        ({}, [60.0], "rate limited: GitHub still refuses after a wait of 60 s"),
    ],
    ids=["beyond the cap", "persists after a wait"],
)
def test_rate_limiting_is_no_baseline_at_once_with_the_real_reason(
    fake_github, env, monkeypatch, capsys, headers, waits, why
):
    _, pr = _pull_request_on(fake_github, zip_of(A_RUN))
    fake_github.fault("GET", r"/actions/workflows/[^/]+/runs$", 403, headers, SECONDARY, times=100)
    sleeps = fast_retries(monkeypatch, fake_github)
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    body = fake_github.comments[pr["number"]][0]["body"]
    head = next(ln for ln in body.splitlines() if ln.startswith("No baseline: "))
    assert head.startswith(f"No baseline: {why}"), head
    (warning,) = [ln for ln in out.splitlines() if ln.startswith("::warning::no baseline:")]
    assert why in warning and "permission" not in warning and "rate" in warning.split(why, 1)[1]  # the hint
    assert sleeps == waits  # the waits the client asked for (recorded, not slept): none beyond the cap
    assert len(fake_github.calls("GET", r"/actions/workflows/[^/]+/runs$")) == len(waits) + 1


def test_a_rate_limited_comment_is_a_warning_and_the_summary_still_has_the_report(
    fake_github, env, monkeypatch, capsys
):
    pr = webhook_example("pull_request", "opened")
    fake_github.fault("POST", r"/issues/\d+/comments$", 429, {"Retry-After": "3600"}, times=10)
    sleeps = fast_retries(monkeypatch, fake_github)
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    why = "could not post the pull request comment: rate limited: GitHub asks to wait 3600 s, more than the cap 300 s"
    assert re.search(rf"^::warning::{why}", out, re.M), out
    assert sleeps == [] and pr["number"] not in fake_github.comments and step_outputs(env)["comment-url"] == ""
    assert "## Verifily Train" in (env["tmp"] / "summary.md").read_text()


@pytest.mark.parametrize("status, expect", [(403, "answered 403"), (502, "answered 502")])
def test_a_failed_lookup_of_the_base_branchs_runs_is_no_baseline(fake_github, env, monkeypatch, capsys, status, expect):
    """Listing the workflow's runs fails (a token without `actions: read`: 403; GitHub down after the retries)."""
    _, pr = _pull_request_on(fake_github, zip_of(A_RUN))
    fake_github.fault("GET", r"/actions/workflows/[^/]+/runs$", status, times=100)
    fast_retries(monkeypatch, fake_github)
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    body = fake_github.comments[pr["number"]][0]["body"]
    assert "No baseline: the base branch's runs could not be looked up" in body, body
    assert expect in body and TOKEN not in body
    assert re.search(r"^::warning::no baseline: the base branch's runs could not be looked up", out, re.M)
    assert env["stub"].baselines == [None] and step_outputs(env)["artifact-id"]


def test_a_baseline_folder_that_is_no_run_is_no_baseline(fake_github, env, capsys):
    run, pr = _pull_request_on(fake_github, zip_of({"notes.txt": b"not a run"}))
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    body = fake_github.comments[pr["number"]][0]["body"]
    why = f"run {run['id']}'s artifact `verifily-run` cannot be compared with this run: the baseline folder is not"
    assert f"No baseline: {why}" in body, body
    assert "/tmp" not in body.split("No baseline:")[1].split("\n")[0]
    assert re.search(rf"^::warning::no baseline: run {run['id']}'s artifact", capsys.readouterr().out, re.M)
    # compared once with the baseline (refused), then this run alone
    assert len(env["stub"].baselines) == 2 and env["stub"].baselines[1] is None


def test_this_runs_own_compare_error_still_fails(fake_github, env, monkeypatch, capsys):
    class Broken(type(env["stub"])):
        def compare(self, run_dir, baseline_dir, inputs):
            raise VerifilyError(f"run {run_dir} has no evaluation")

    monkeypatch.setattr(action, "PIPELINE", Broken(env["ws"]))
    _, pr = _pull_request_on(fake_github, zip_of(A_RUN))
    set_event(env, "pull_request", pr)
    assert action.main() == 2
    assert "has no evaluation" in capsys.readouterr().out
    assert pr["number"] not in fake_github.comments


def test_a_gate_rule_that_names_no_slice_fails_and_is_not_blamed_on_the_baseline(fake_github, env, monkeypatch, capsys):
    from verifily_action.compare.gates import GateRuleError

    class Typo(type(env["stub"])):
        def compare(self, run_dir, baseline_dir, inputs):
            if baseline_dir is not None:  # the rules are checked against the compared slices
                raise GateRuleError("1 gate rule(s) name a slice that does not exist")
            return super().compare(run_dir, baseline_dir, inputs)

    monkeypatch.setattr(action, "PIPELINE", Typo(env["ws"]))
    _, pr = _pull_request_on(fake_github, zip_of(A_RUN))
    set_event(env, "pull_request", pr)
    assert action.main() == 2
    out = capsys.readouterr().out
    assert "name a slice that does not exist" in out and "no baseline" not in out.lower()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_failed_upload_is_a_warning_and_the_report_still_goes_out(fake_github, env, monkeypatch, capsys):
    monkeypatch.setenv("ACTIONS_RESULTS_URL", _closed_port())
    sleeps: list[float] = []  # the uploader's retries, recorded instead of slept
    monkeypatch.setattr(artifacts, "upload_artifact", functools.partial(artifacts.upload_artifact, sleep=sleeps.append))
    pr = webhook_example("pull_request", "opened")
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    assert re.search(r"^::warning::artifact upload failed: CreateArtifact failed: ConnectionError", out, re.M), out
    assert sleeps  # the connection was retried
    outputs = step_outputs(env)
    assert outputs["artifact-id"] == "" and outputs["run-dir"] and outputs["regressions"] == "0"
    body = fake_github.comments[pr["number"]][0]["body"]
    assert outputs["comment-url"] == fake_github.comments[pr["number"]][0]["html_url"]
    assert "artifact `verifily-run` (not uploaded)" in body and "/artifacts/" not in body
    assert "## Verifily Train" in (env["tmp"] / "summary.md").read_text()
