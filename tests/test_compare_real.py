"""`verifily compare` on two real runs: all-MiniLM-L6-v2 + LoRA trained on ds_demo v1 (human + FewGen synthetic) and
v2 (human + SuperGen synthetic), both evaluated on the same real eval rows, so they pair example by example."""

from __future__ import annotations

import json

import pytest

from tests.compare_real import shared_runs
from verifily_action.schemas import validator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def doc(real):
    from tests.cli_runner import run_cli

    out = run_cli("compare", "--runs", f"{real['v1']},{real['v2']}", "--slice-by", "source", "-f", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def results(run):
    return json.loads((run / "eval" / "ds_demo@v1-eval" / "eval_results.json").read_text())


def test_runs_pair_on_the_same_examples(doc):
    assert doc["pairing"] == [{"run": "demo_v2", "paired": True, "reason": "paired on 80 matching examples"}]
    assert list(validator("comparison.schema.json").iter_errors(doc)) == []


def test_values_are_the_evaluations_and_deltas_their_difference(real, doc):
    r1, r2 = results(real["v1"]), results(real["v2"])
    for row in doc["rows"]:
        m = row["metric"]
        if row["slice"]:
            (s1,) = [s for s in r1["slices"] if s["key"] == row["slice"]]
            (s2,) = [s for s in r2["slices"] if s["key"] == row["slice"]]
            want = (s1["metrics"][m]["value"], s2["metrics"][m]["value"])
            assert [v["n"] for v in row["values"]] == [s1["n"], s2["n"]] == [40, 40]
        else:
            want = (r1["overall"][m]["value"], r2["overall"][m]["value"])
        assert (row["values"][0]["value"], row["values"][1]["value"]) == pytest.approx(want)
        d = row["deltas"][0]
        assert d["delta"] == pytest.approx(want[1] - want[0])
        assert d["method"] == "paired" and d["ci_low"] <= d["delta"] <= d["ci_high"]
        assert d["test"] == ("mcnemar_exact" if m == "accuracy" else "paired_permutation")
    assert {tuple(r["slice"].items()) for r in doc["rows"]} == {(), (("source", "human"),), (("source", "synthetic"),)}


def test_mcnemar_counts_from_the_real_predictions(real, doc):
    def correct(run):
        path = run / "eval" / "ds_demo@v1-eval" / "predictions.jsonl"
        return {r["id"]: r["correct"] for r in map(json.loads, path.read_text().splitlines())}

    a, b = correct(real["v1"]), correct(real["v2"])
    (overall,) = [r for r in doc["rows"] if r["metric"] == "accuracy" and not r["slice"]]
    assert overall["deltas"][0]["discordant"] == [
        sum(a[i] and not b[i] for i in a),
        sum(b[i] and not a[i] for i in a),
    ]


def test_dataset_diff_between_the_versions(doc):
    (diff,) = doc["dataset_diffs"]
    assert (diff["from"], diff["to"], diff["split"]) == ("ds_demo@v1", "ds_demo@v2", "train")
    # v2 swaps the synthetic rows (FewGen -> SuperGen) and keeps the human ones
    assert diff["text"] == (
        "ds_demo@v1 → ds_demo@v2 (train): added 40 rows (source=synthetic 40), removed 40 (source=synthetic 40); "
        "40 unchanged."
    )


def test_table_markdown_and_gate_on_real_runs(cli, real):
    table = cli("compare", "--runs", f"{real['v1']},{real['v2']}", "--metric", "macro_f1")
    assert table.returncode == 0, table.stderr
    assert "source=synthetic" in table.stdout and "macro-F1" in table.stdout and "accuracy" not in table.stdout
    md = cli("compare", "--runs", f"{real['v1']},{real['v2']}", "-f", "markdown", "--fail-on", "accuracy>=-1")
    assert md.returncode == 1  # every change is >= -1: the rule holds, the gate fails
    assert "| slice | metric | demo_v1 | n | demo_v2 | n |" in md.stdout
    assert "accuracy>=-1 FAILED for demo_v2" in md.stderr
