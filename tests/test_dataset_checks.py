"""Data checks: empty texts, exact duplicates and train/eval leakage, counted and located."""

from __future__ import annotations

import json

import pytest

from tests.builders import jsonl, row, write_dataset
from tests.paths import DEMO_ROOT
from verifily_action.datasets import DataReport, check_data, load_manifest, resolve

pytestmark = pytest.mark.unit


def test_demo_dataset_is_clean():
    for ref in ("ds_demo@v1", "ds_demo@v2"):
        r = check_data(resolve(ref, DEMO_ROOT))
        assert isinstance(r, DataReport)
        assert r.rows == {"train": 2000, "eval": 1200}
        assert r.clean and r.findings == 0 and r.leakage == {"train/eval": 0}


def test_findings_are_counted_and_located(tmp_path):
    train = [
        row(1, text="Great movie"),
        row(2, text="   "),
        row(3, text=""),
        {"id": "r4", "text": "Great movie", "label": "positive", "tags": {"source": "human"}},  # duplicate of r1
        row(5, text="Shared  with EVAL"),
        row(6, text="unique"),
    ]
    evals = [row(10, text="shared with eval"), row(11, text="fine"), row(12, text="Great movie", label="negative")]
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl(train), "eval": jsonl(evals)})
    r = check_data(load_manifest(p))
    assert r.rows == {"train": 6, "eval": 3}
    assert r.empty_text == {"train": 2, "eval": 0}
    assert r.duplicates == {"train": 1, "eval": 0}
    # leakage compares normalized text (case, whitespace), whatever the label
    assert r.leakage == {"train/eval": 2}
    assert r.findings == 5 and not r.clean
    where = {(f.check, f.file.rsplit("/", 1)[-1], f.line) for f in r.examples}
    assert {("empty_text", "train.jsonl", 2), ("empty_text", "train.jsonl", 3)} <= where
    assert ("duplicate", "train.jsonl", 4) in where
    assert {("leakage", "eval.jsonl", 1), ("leakage", "eval.jsonl", 3)} <= where
    d = r.to_dict()
    assert d["schema_version"] == 1 and d["dataset"] == "ds@v1"
    json.dumps(d)  # JSON-able for run_meta.json


def test_only_requested_splits_and_invalid_rows_reported(tmp_path):
    p = write_dataset(
        tmp_path, "ds", "v1", {"train": jsonl([row(1)]) + b"{bad\n", "eval": [row(1, text="text number 1")]}
    )
    r = check_data(load_manifest(p), splits=["train"])
    assert list(r.rows) == ["train"] and r.leakage == {}
    assert r.row_problem_total == 1 and r.row_problems[0].line == 2 and not r.clean


def test_api_diff_one_split_and_info():
    from verifily_action.datasets import diff, info

    a, b = resolve("ds_demo@v1", DEMO_ROOT), resolve("ds_demo@v2", DEMO_ROOT)
    d = diff(a, b, "eval")
    assert list(d["splits"]) == ["eval"] and d["splits"]["eval"]["unchanged"] == 1200
    assert (d["a"], d["b"]) == ("ds_demo@v1", "ds_demo@v2")
    assert info(b)["splits"]["train"]["tags"]["origin"]["supergen"] == 1000


def test_leakage_into_another_versions_eval_split(tmp_path):
    """A run may evaluate on another version's eval split (`eval_dataset`): its train rows are checked against
    that split, and ids are unique within a version, not across versions."""
    train = [row(1, text="Seen in training"), row(2, text="only here")]
    v1 = load_manifest(write_dataset(tmp_path, "ds", "v1", {"train": jsonl(train), "eval": jsonl([row(9)])}))
    evals = [row(1, text="seen in   TRAINING"), row(3, text="new text")]  # r1 again: same id, other version
    v2 = load_manifest(write_dataset(tmp_path, "ds", "v2", {"eval": jsonl(evals)}))
    r = check_data(v1, splits=["train"], others=[(v2, "eval")])
    assert r.rows == {"train": 2, "ds@v2:eval": 2}
    assert r.leakage == {"train/ds@v2:eval": 1} and r.row_problem_total == 0
    (f,) = [f for f in r.examples if f.check == "leakage"]
    assert f.file.endswith("v2/eval.jsonl") and f.line == 1


def test_a_duplicate_id_is_located_in_its_own_split_file(tmp_path):
    p = write_dataset(tmp_path, "ds", "v1", {"train": jsonl([row(1)]), "eval": jsonl([row(5), row(5, text="again")])})
    r = check_data(load_manifest(p))
    (problem,) = r.row_problems
    assert "duplicate id" in problem.message and problem.file.endswith("eval.jsonl") and problem.line == 2
    assert "first seen at" in problem.message and "eval.jsonl:1" in problem.message
