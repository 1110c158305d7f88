"""GitHub Enterprise Server: no artifacts v4 there. The Action says so once, makes no artifact call, never says a
bare "No baseline", and the documented path (a `baseline: <path>` folder) still compares."""

from __future__ import annotations

import json

import pytest

from verifily_action.action import flow as action
from verifily_action.github.server import is_ghes

from .action_helpers import set_event, step_outputs
from .github_fake import TWIRP
from .github_fixtures import webhook_example
from .paths import REPO as ROOT

pytestmark = pytest.mark.unit

GHES = "https://github.example.com"


@pytest.mark.parametrize(
    ("url", "ghes"),
    [
        ("https://github.com", False),
        ("https://GitHub.com/", False),
        ("https://octo-corp.ghe.com", False),  # GitHub Enterprise Cloud with data residency
        ("http://github.ghe.localhost", False),
        ("", False),
        (None, False),
        ("https://github.example.com", True),
        ("https://ghe.internal:8443", True),
        ("https://github.com.evil.example", True),
    ],
)
def test_ghes_is_told_apart_as_actions_toolkit_does(url, ghes):
    assert is_ghes(url) is ghes


def _artifact_calls(fake) -> list[str]:
    return [r.path for r in fake.requests if "/actions/" in r.path or r.path.startswith(TWIRP) or r.host == "blob"]


def test_a_pull_request_on_ghes_says_why_once_and_calls_no_artifact_api(fake_github, env, capsys):
    env["monkeypatch"].setenv("GITHUB_SERVER_URL", GHES)
    base = fake_github.add_run("a" * 40)  # a base-branch run that would otherwise be looked up
    fake_github.add_artifact(base["id"], "verifily-run", b"zip")
    pr = webhook_example("pull_request", "opened")
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    out = capsys.readouterr().out
    assert out.count("::notice::GitHub Enterprise Server (github.example.com) has no artifacts v4") == 1
    assert "actions/upload-artifact@v3" in out and "baseline: <path>" in out and "::warning::" not in out
    assert not _artifact_calls(fake_github)
    summary = (env["tmp"] / "summary.md").read_text()
    assert "No baseline: GitHub Enterprise Server has no artifacts v4" in summary
    assert step_outputs(env)["artifact-id"] == "" and env["stub"].baselines == [None]


def test_a_baseline_folder_compares_on_ghes(fake_github, env, capsys):
    env["monkeypatch"].setenv("GITHUB_SERVER_URL", GHES)
    env["monkeypatch"].setenv("INPUT_BASELINE", "baseline-run")
    folder = env["ws"] / "baseline-run"
    folder.mkdir()
    (folder / "run_meta.json").write_text(json.dumps({"run_key": "from-v3", "status": "completed"}))
    set_event(env, "pull_request", webhook_example("pull_request", "opened"))
    assert action.main() == 0
    assert env["stub"].baselines == [folder.resolve()]
    summary = (env["tmp"] / "summary.md").read_text()
    assert "vs from-v3" in summary and "No baseline" not in summary
    assert not _artifact_calls(fake_github)


def test_the_comment_job_on_ghes_is_a_notice_and_reads_nothing(fake_github, env, capsys):
    env["monkeypatch"].setenv("GITHUB_SERVER_URL", GHES)
    env["monkeypatch"].setenv("INPUT_MODE", "comment")
    set_event(env, "workflow_run", webhook_example("workflow_run", "completed"))
    assert action.main() == 0
    out = capsys.readouterr().out
    assert out.count("::notice::GitHub Enterprise Server") == 1 and "nothing to comment" in out
    assert not fake_github.requests


def test_the_readme_documents_the_ghes_path():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### GitHub Enterprise Server", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert "actions/upload-artifact@v3" in section and "baseline:" in section
    flow = (ROOT / ".github" / "workflows" / "verifily.yml").read_text(encoding="utf-8")
    assert "GitHub Enterprise Server" in flow and "upload-artifact@v3" in flow
