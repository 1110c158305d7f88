"""How the baseline run is looked up against the fake GitHub: the merge base's run asked for by commit, and the
compare API failing on GitHub's side."""

from __future__ import annotations

import pytest

from verifily_action.github.baseline import find_baseline, resolve_baseline

from .github_fixtures import zip_of

pytestmark = pytest.mark.unit

REPO = "Codertocat/Hello-World"
NAME = "verifily-run"
A_RUN = zip_of({"run_meta.json": b"{}"})


def _sha(n: int) -> str:
    return f"{n:040x}"


def _history(fake, newer: int) -> dict:
    """The merge base's push run, then `newer` successful runs on master after it, each with an artifact."""
    mb = fake.add_run(_sha(1), created_at="2024-01-01T00:00:00Z")
    fake.add_artifact(mb["id"], NAME, A_RUN)
    for i in range(newer):
        r = fake.add_run(_sha(1000 + i), created_at=f"2024-02-{1 + i // 24:02d}T{i % 24:02d}:00:00Z")
        fake.add_artifact(r["id"], NAME, A_RUN)
    return mb


def test_the_merge_base_run_is_found_beyond_the_newest_hundred(fake_github, gh):
    mb = _history(fake_github, 105)
    # a pull request's run at the same commit and branch is not the merge base's push run
    fake_github.add_run(_sha(1), event="pull_request", created_at="2024-03-01T00:00:00Z")
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME, merge_base_sha=_sha(1))
    assert res.baseline is not None and res.baseline.run_id == mb["id"] and res.baseline.merge_base
    by_commit = [c.query for c in fake_github.calls("GET", r"/workflows/eval.yml/runs$") if "head_sha" in c.query]
    assert by_commit and all(q["head_sha"] == [_sha(1)] and q["event"] == ["push"] for q in by_commit)
    assert all(q["branch"] == ["master"] and q["status"] == ["success"] for q in by_commit)


def test_without_a_merge_base_the_newest_run_is_used(fake_github, gh):
    _history(fake_github, 3)
    res = find_baseline(gh, REPO, "eval.yml", "master", NAME)
    assert res.baseline is not None and res.baseline.head_sha == _sha(1002) and not res.baseline.merge_base
    assert not [c for c in fake_github.calls("GET", "/runs$") if "head_sha" in c.query]


def _resolve(gh, tmp_path):
    return resolve_baseline(
        gh,
        REPO,
        "auto",
        workflow="eval.yml",
        artifact_name=NAME,
        workspace=tmp_path,
        base=("master", _sha(7), _sha(8)),
        exclude_run_id=None,
        dest=tmp_path / "baseline",
    )


def test_a_failing_compare_api_falls_back_to_the_newest_run_and_says_so_once(fake_github, gh, tmp_path, capsys):
    _history(fake_github, 2)
    fake_github.merge_bases[f"{_sha(7)}...{_sha(8)}"] = _sha(1)
    fake_github.fault("GET", r"/compare/", 502, times=100)
    res = _resolve(gh, tmp_path)
    assert res.baseline is not None and res.baseline.head_sha == _sha(1001) and not res.baseline.merge_base
    assert res.baseline.dir is not None and (res.baseline.dir / "run_meta.json").is_file()
    assert "the merge base is unknown, the compare API failed" in res.reason
    out = capsys.readouterr().out
    assert out.count("::notice::the merge base is unknown") == 1 and "::warning::" not in out
    fake_github.faults.clear()  # GitHub answers again: the merge base's run, as usual
    res = _resolve(gh, tmp_path)
    assert res.baseline is not None and res.baseline.head_sha == _sha(1) and res.baseline.merge_base


def test_a_refused_compare_is_still_no_baseline_with_a_warning(fake_github, gh, tmp_path, capsys):
    _history(fake_github, 1)
    fake_github.fault("GET", r"/compare/", 403, times=100)
    res = _resolve(gh, tmp_path)
    assert res.baseline is None and "could not be looked up" in res.reason
    assert "::warning::no baseline" in capsys.readouterr().out
