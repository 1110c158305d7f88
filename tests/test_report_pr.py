"""The pull-request report's footer names the run it reports on by its root hash (what `reproduce --verify-only`
prints and a signature signs), and shows nothing else a run folder might put there."""

from __future__ import annotations

import pytest

from tests.builders import sealed_run
from verifily_action.report.pr import compose
from verifily_action.runs.chain import verified_root

pytestmark = pytest.mark.unit

ARGS = {"run_url": "https://github.com/o/r/actions/runs/7", "artifact_name": "verifily-run", "artifact_id": 3}


def test_the_footer_shows_the_root_hash():
    root = "0123456789abcdef" * 4
    body = compose("the table", "Baseline: x.", root_hash=root, **ARGS)
    assert body.rstrip().endswith(f"· root hash `{root}`")
    assert "root hash" not in compose("the table", "Baseline: x.", **ARGS)


@pytest.mark.parametrize("bad", ["abc", "0123456789abcdef" * 4 + "`@org/team", "[x](http://e.com)", "A" * 64])
def test_a_root_hash_that_is_not_one_is_not_shown(bad):
    assert "root hash" not in compose("t", "b", root_hash=bad, **ARGS)


def test_the_root_hash_is_shown_only_for_a_run_whose_chain_holds(tmp_path):
    run = sealed_run(tmp_path)
    assert verified_root(run) == (run / "run_meta.json").read_text().split('"root_hash": "')[1][:64]
    (run / "train_log.jsonl").write_text("edited\n")
    assert verified_root(run) is None


def test_the_dashboard_page_is_named_only_beside_an_uploaded_artifact():
    linked = compose("t", "b", html="verifily-report.html", **ARGS)
    assert "(dashboard: open `verifily-report.html` from it)" in linked
    assert "dashboard" not in compose("t", "b", html="verifily-report.html", **{**ARGS, "artifact_id": None})
    assert "dashboard" not in compose("t", "b", **ARGS)
