"""Compare uses `verifily eval`'s per-slice macro-F1 (issue 16, item 5): over the labels of the slice's references,
for the runs' values and for the change between them, also on slices the evals did not report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tests.compare_fakes import intent_records, make_run
from verifily_action.compare import compare

pytestmark = pytest.mark.unit


def _slice_f1(records: list[dict], key: dict[str, str]) -> float:
    rows = [r for r in records if all(r["tags"][k] == v for k, v in key.items())]
    refs, preds = [r["reference"] for r in rows], [r["prediction"] for r in rows]
    return float(f1_score(refs, preds, labels=sorted(set(refs)), average="macro", zero_division=0))


@pytest.fixture(scope="module")
def intents(tmp_path_factory):
    root = tmp_path_factory.mktemp("intents")
    base, cand = intent_records(rows=1500, seed=0), intent_records(rows=1500, seed=0)
    rng = np.random.default_rng(9)
    for r in cand:  # the candidate gets some of the baseline's mistakes right
        if r["reference"] != r["prediction"] and rng.random() < 0.3:
            r["prediction"] = r["reference"]
    a = make_run(root, "a", base, slice_by=["domain"])
    b = make_run(root, "b", cand, slice_by=["domain"])
    return a, b, base, cand


def test_slice_values_and_changes_are_over_the_slice_labels(intents):
    a, b, base, cand = intents
    # domain slices were reported by eval (reused); source slices were not (computed here)
    c = compare([a, b], metrics=["macro_f1"], slice_by=["domain", "source"])
    assert c["slice_macro_f1"] == "slice_labels"
    rows = [r for r in c["rows"] if r["slice"]]
    assert {tuple(r["slice"]) for r in rows} == {("domain",), ("source",)}
    for row in rows:
        want_a, want_b = _slice_f1(base, row["slice"]), _slice_f1(cand, row["slice"])
        va, vb = row["values"]
        assert va["value"] == pytest.approx(want_a, abs=1e-12) and vb["value"] == pytest.approx(want_b, abs=1e-12)
        for v in (va, vb):
            assert v["ci_low"] <= v["value"] <= v["ci_high"], (row["slice"], v)
        (d,) = row["deltas"]
        assert d["method"] == "paired" and d["delta"] == pytest.approx(want_b - want_a, abs=1e-12)
    whole = next(r for r in c["rows"] if not r["slice"])
    refs = [r["reference"] for r in base]
    assert whole["values"][0]["value"] == pytest.approx(
        f1_score(refs, [r["prediction"] for r in base], average="macro"), abs=1e-12
    )


def _as_old(run: Path, dest: Path) -> Path:
    """A copy of `run` whose eval results predate the recorded definition (so: all_labels); its slices' macro-F1
    (made with slice_labels by the fake) is left out, for compare to compute."""
    shutil.copytree(run, dest)
    path = dest / "eval" / "ds_demo@v1-eval" / "eval_results.json"
    results = json.loads(path.read_text())
    results.pop("slice_macro_f1")
    for s in results["slices"]:
        s["metrics"].pop("macro_f1")
    path.write_text(json.dumps(results))
    return dest


def test_runs_whose_evals_disagree_are_recomputed_over_the_slice_labels(intents, tmp_path):
    a, b, base, cand = intents
    old_a, old_b = _as_old(a, tmp_path / "old-a"), _as_old(b, tmp_path / "old-b")
    c = compare([old_a, b], metrics=["macro_f1"], slice_by=["domain"])
    assert c["slice_macro_f1"] == "slice_labels"
    assert any("different labels" in n for n in c["notes"])
    for row in (r for r in c["rows"] if r["slice"]):
        assert row["values"][0]["value"] == pytest.approx(_slice_f1(base, row["slice"]), abs=1e-12)
    both_old = compare([old_a, old_b], metrics=["macro_f1"], slice_by=["domain"])
    assert both_old["slice_macro_f1"] == "all_labels"  # the definition their evals used, and their numbers
    for row in (r for r in both_old["rows"] if r["slice"]):
        rows = [r for r in base if r["tags"]["domain"] == row["slice"]["domain"]]
        want = f1_score([r["reference"] for r in rows], [r["prediction"] for r in rows], average="macro")
        assert row["values"][0]["value"] == pytest.approx(want, abs=1e-12)
        assert row["values"][0]["value"] < _slice_f1(base, row["slice"]) - 0.2


def test_the_comparison_says_which_labels(intents):
    from verifily_action.report import comparison as render

    a, b, _, _ = intents
    c = compare([a, b], metrics=["macro_f1"], slice_by=["domain"])
    assert "A slice's macro-F1 averages over the labels of its references." in render.footnotes(c)
    assert "macro-F1 averages" not in " ".join(render.footnotes(compare([a, b], metrics=["accuracy"])))
