"""`verifily compare` with cross-tag slices on hand-built runs: values equal sklearn's on the subset, wildcards over
every combination, gates that name the slice that failed, bad slice input, and eval sets told apart by content."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.compare_fakes import make_run, records
from verifily_action.compare import compare, failed_gates
from verifily_action.report import comparison as render
from verifily_action.schemas import validator

pytestmark = pytest.mark.unit

GROUPS = {
    "source=human&origin=imdb": 120,
    "source=human&origin=yelp": 120,
    "source=synthetic&origin=fewgen": 150,
    "source=synthetic&origin=imdb": 20,  # under min_slice_size (30): shown, marked
}
BEFORE = {"source=human&origin=imdb": 0.85, "source=human&origin=yelp": 0.8, "source=synthetic&origin=fewgen": 0.9}
AFTER = {"source=human&origin=imdb": 0.7, "source=human&origin=yelp": 0.8, "source=synthetic&origin=fewgen": 0.9}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Baseline a and candidate b on the same 410 examples; b loses 15 points on human IMDb rows only."""
    root = tmp_path_factory.mktemp("cross")
    a_recs = records(GROUPS, {**BEFORE, "source=synthetic&origin=imdb": 0.5}, seed=1, labelled=True)
    b_recs = records(GROUPS, {**AFTER, "source=synthetic&origin=imdb": 0.5}, seed=2, labelled=True)
    a = make_run(root, "a", a_recs, slice_by=("source",))
    b = make_run(root, "b", b_recs, slice_by=("source",), cross=("source=*&origin=*",))  # b's eval has them
    return a, b, a_recs, b_recs


def rows_of(comparison, key, metric="accuracy"):
    return [r for r in comparison["rows"] if r["slice"] == key and r["metric"] == metric]


def _sklearn(recs, key):
    sub = [r for r in recs if all(r["tags"][k] == v for k, v in key.items())]
    refs, preds = [r["reference"] for r in sub], [r["prediction"] for r in sub]
    return len(sub), accuracy_score(refs, preds), f1_score(refs, preds, average="macro")


def test_cross_slice_values_equal_sklearn_on_the_subset(pair):
    a, b, a_recs, b_recs = pair
    c = compare([a, b], slice_by=["source=human&origin=imdb", "origin=yelp & source=human"])
    for key in ({"source": "human", "origin": "imdb"}, {"origin": "yelp", "source": "human"}):
        for i, recs in enumerate((a_recs, b_recs)):
            n, acc, f1 = _sklearn(recs, key)
            (acc_row,) = rows_of(c, key, "accuracy")
            (f1_row,) = rows_of(c, key, "macro_f1")
            assert acc_row["values"][i]["n"] == n
            assert acc_row["values"][i]["value"] == pytest.approx(acc, abs=1e-12)
            assert f1_row["values"][i]["value"] == pytest.approx(f1, abs=1e-12)
    (imdb,) = rows_of(c, {"source": "human", "origin": "imdb"})
    d = imdb["deltas"][0]
    assert d["method"] == "paired" and d["delta"] == pytest.approx(-0.15) and d["significant"] and not d["improved"]
    assert c["slice_by"] == ["source=human&origin=imdb", "origin=yelp&source=human"]
    assert list(validator("comparison.schema.json").iter_errors(c)) == []


def test_wildcards_give_every_combination_some_example_has(pair):
    a, b, a_recs, _ = pair
    c = compare([a, b], slice_by=["source×origin"], metrics=["accuracy"])
    keys = [r["slice"] for r in c["rows"]][1:]
    assert keys == [
        {"source": "human", "origin": "imdb"},
        {"source": "human", "origin": "yelp"},
        {"source": "synthetic", "origin": "fewgen"},
        {"source": "synthetic", "origin": "imdb"},
    ]  # human (240) before synthetic (170), then the origins most common first; no empty combination
    (small,) = rows_of(c, {"source": "synthetic", "origin": "imdb"})
    assert [(v["n"], v["too_small"]) for v in small["values"]] == [(20, True), (20, True)]
    assert small["deltas"][0]["status"] == "compared"  # shown and compared, only marked
    md = render.markdown(c)
    assert "0.50 [0.25, 0.70]† | 20 |" in md and "fewer examples than the eval's min_slice_size" in md
    for key in keys:
        (row,) = rows_of(c, key)
        assert row["values"][0]["value"] == pytest.approx(_sklearn(a_recs, key)[1], abs=1e-12)


def test_default_slices_are_what_the_evaluations_used(pair):
    a, b, *_ = pair
    assert json.loads((b / "eval/ds_demo@v1-eval/eval_results.json").read_text())["slicing"] == [
        "source",
        "source=*&origin=*",
    ]
    c = compare([a, b], metrics=["accuracy"])
    assert c["slice_by"] == ["source", "source=*&origin=*"]
    assert {"source": "synthetic", "origin": "fewgen"} in [r["slice"] for r in c["rows"]]


def test_a_gate_on_a_cross_slice(pair):
    a, b, *_ = pair
    c = compare([a, b], fail_on=["macro_f1@source=human&origin=imdb<-2pts", "accuracy@source=human&origin=yelp<-2pts"])
    failed = failed_gates(c)
    assert [g["slice"] for g in failed] == [{"source": "human", "origin": "imdb"}]
    assert failed[0]["message"].startswith("macro_f1@source=human&origin=imdb<-2pts FAILED for b: ")
    assert len(c["gates"]) == 2


def test_a_wildcard_gate_names_the_slice_that_failed(pair, cli):
    a, b, *_ = pair
    c = compare([a, b], fail_on=["accuracy@source=*&origin=*<-2pts"])
    assert len(c["gates"]) == 4
    (failed,) = failed_gates(c)
    assert failed["message"].startswith("accuracy@source=*&origin=*<-2pts FAILED on source=human&origin=imdb for b: ")
    md = render.markdown(c)
    assert "FAILED on source=human&amp;origin=imdb for b" in md  # the comment (`&` made inert for markdown)
    res = cli("compare", "--runs", f"{a},{b}", "--fail-on", "accuracy@source=*&origin=*<-2pts")
    assert res.returncode == 1
    assert "accuracy@source=*&origin=*<-2pts FAILED on source=human&origin=imdb for b" in res.stderr  # the terminal
    assert "FAILED on source=human&origin=yelp" not in res.stderr + res.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--slice-by", "source=human & lang=en"], "no eval row has the tag key lang"),
        (["--slice-by", "source=human &"], "bad slice expression 'source=human &' (--slice-by): a term is missing"),
        (["--fail-on", "accuracy@source=human&origin=amazon<0"], "no run has the slice source=human&origin=amazon"),
        (["--fail-on", "accuracy@lang=*<0"], "no eval row has the tag key lang"),
        (["--fail-on", "accuracy@source=human&<0"], "its slice: a term is missing after '&' at position 22"),
    ],
)
def test_bad_slice_input_is_one_clear_error(pair, cli, args, says):
    a, b, *_ = pair
    res = cli("compare", "--runs", f"{a},{b}", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ")


def test_empty_and_shows_the_position(pair, cli):
    a, b, *_ = pair
    res = cli("compare", "--runs", f"{a},{b}", "--slice-by", "source=human &")
    assert res.stderr.splitlines()[1:3] == ["  source=human &", "  " + " " * 13 + "^"]


def test_a_value_no_row_has_is_a_warning_naming_the_values(pair, cli):
    a, b, *_ = pair
    c = compare([a, b], slice_by=["source", "origin=amazon"], metrics=["accuracy"])
    (row,) = rows_of(c, {"origin": "amazon"})
    assert [v["n"] for v in row["values"]] == [0, 0] and row["deltas"][0]["status"] == "absent"
    (w,) = c["warnings"]
    assert "no eval row has origin=amazon" in w and "values of origin: fewgen, imdb, yelp" in w
    assert f"warning: {w}" in render.footnotes(c)
    res = cli("compare", "--runs", f"{a},{b}", "--slice-by", "origin=amazon", "-f", "json")
    assert res.returncode == 0 and "warning: no eval row has origin=amazon" in res.stderr
    assert json.loads(res.stdout)["warnings"] == [w]


def test_cross_slices_through_the_cli(pair, cli):
    a, b, *_ = pair
    res = cli("compare", "--runs", f"{a},{b}", "--slice-by", "source=*&origin=*", "--metric", "accuracy")
    assert res.returncode == 0, res.stderr
    assert "source=human&origin=imdb" in res.stdout and "accuracy on source=human&origin=imdb regressed" in res.stdout


# ---------------------------------------------------------------- the same eval set, by content


def _two(tmp_path, hash_a, hash_b, name_b="ds@v2-eval"):
    recs = records({"h": 60}, {"h": 0.5}, seed=1)
    a = make_run(tmp_path, "a", recs, eval_name="ds@v1-eval", content_hash=hash_a)
    b = make_run(tmp_path, "b", records({"h": 60}, {"h": 0.6}, seed=2), eval_name=name_b, content_hash=hash_b)
    return compare([a, b])


def test_byte_identical_eval_files_are_one_eval_set(tmp_path):
    c = _two(tmp_path, "c" * 64, "c" * 64)
    assert not any("different datasets" in n for n in c["notes"])
    assert "different datasets" not in render.markdown(c)


def test_different_content_is_a_different_eval_set_even_under_one_name(tmp_path):
    c = _two(tmp_path, "c" * 64, "d" * 64, name_b="ds@v1-eval")
    assert any("different datasets" in n for n in c["notes"])


def test_without_content_hashes_the_names_decide(tmp_path):
    c = _two(tmp_path, None, "c" * 64)
    assert any("different datasets" in n for n in c["notes"])


def test_engine_masks_are_and_of_pairs():
    from verifily_action.compare.engine import build
    from verifily_action.compare.loading import EvalRun

    tags = [{"a": x, "b": y} for x in "pq" for y in "rs" for _ in range(10)]
    refs = ["x", "y"] * 20
    run = EvalRun(
        dir=None,  # type: ignore[arg-type]
        name="r",
        meta={},
        eval_name="e",
        results={"task": "classification", "confidence": 0.9, "bootstrap_resamples": 1000, "min_slice_size": 5},
        ids=[str(i) for i in range(40)],
        tags=tags,
        references=refs,
        predictions=["x"] * 40,
        losses=[None] * 40,
    )
    c = build([run, run], ["accuracy"], ["a=q&b=*"], confidence=0.95)  # not the results' 0.9: computed here
    got = {tuple(r["slice"].items()): r["values"][0]["n"] for r in c["rows"]}
    assert got == {(): 40, (("a", "q"), ("b", "r")): 10, (("a", "q"), ("b", "s")): 10}
    assert np.isclose(c["rows"][1]["values"][0]["value"], 0.5)
