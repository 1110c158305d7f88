"""`verifily compare --discover` (issue 16, item 4): the combination of tags that regressed most between two runs on the
same examples, in the JSON, the summary and the markdown; nothing on a change spread evenly; no search unpaired."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.compare_fakes import make_run
from verifily_action.compare import compare
from verifily_action.evaluate import runner
from verifily_action.report import comparison as render
from verifily_action.schemas import load_schema, validator

pytestmark = pytest.mark.unit

N = 800


def _tagged(seed: int = 0, prefix: str = "ex") -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    origin, source = rng.choice(["a", "b", "c", "x"], N), rng.choice(["y", "z"], N)
    tags = [{"origin": o, "source": s} for o, s in zip(origin, source, strict=True)]
    return tags, (origin == "x") & (source == "y")


def _run_records(tags: list[dict], right: np.ndarray, prefix: str = "ex") -> list[dict]:
    refs = ["pos" if i % 2 else "neg" for i in range(N)]
    preds = [r if ok else ("neg" if r == "pos" else "pos") for r, ok in zip(refs, right, strict=True)]
    ids = [f"{prefix}-{i:04d}" for i in range(N)]
    return runner.build_records("classification", ids, tags, refs, preds, [None] * N)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("discover")
    tags, planted = _tagged()
    rng = np.random.default_rng(1)
    before = rng.random(N) < 0.85
    after = before.copy()
    after[planted & before & (rng.random(N) < 0.6)] = False  # the candidate loses 60% of that slice's right answers
    even = before.copy()
    even[before & (rng.random(N) < 0.1)] = False  # 10% everywhere: no combination stands out
    a = make_run(root, "a", _run_records(tags, before), slice_by=["source"])
    b = make_run(root, "b", _run_records(tags, after), slice_by=["source"])
    c = make_run(root, "c", _run_records(tags, even), slice_by=["source"])
    other = make_run(root, "d", _run_records(tags, after, prefix="other"), slice_by=["source"])
    return a, b, c, other


def test_the_combination_that_regressed_most_is_named(runs):
    a, b, _, _ = runs
    c = compare([a, b], metrics=["accuracy"], discover=True)
    assert sorted(validator("comparison.schema.json").iter_errors(c), key=str) == []
    (entry,) = c["discovery"]
    assert entry["run"] == "b" and entry["paired"] and entry["reason"] is None
    result = entry["result"]
    worst = result["found"][0]
    assert worst["key"] == {"origin": "x", "source": "y"}
    assert worst["value"] < -0.3 < result["found"][0]["rest"] + 0.3  # its change, against the rest's (about 0)
    line = next(s for s in c["summary"] if s.startswith("the combination that regressed most"))
    assert line.startswith("the combination that regressed most (b): origin=x&source=y, n=")
    assert "accuracy −" in line and "q<0.001" in line
    assert "- the combination that regressed most (b): origin=x&amp;source=y, n=" in render.markdown(c)
    assert json.loads(render.to_json(c))["discovery"][0]["result"]["found"][0]["key"] == worst["key"]


def test_an_even_regression_names_no_combination(runs):
    a, _, even, _ = runs
    c = compare([a, even], metrics=["accuracy"], discover=True)
    (entry,) = c["discovery"]
    assert entry["result"]["found"] == []
    tested = entry["result"]["candidates"]["tested"]
    assert f"no combination of tags regressed significantly more than the rest (c; {tested} tested)" in c["summary"]


def test_unpaired_runs_are_not_searched_and_discovery_is_asked_for(runs):
    a, b, _, other = runs
    c = compare([a, other], metrics=["accuracy"], discover=True)
    (entry,) = c["discovery"]
    assert not entry["paired"] and entry["result"] is None and "not paired" in entry["reason"]
    assert sorted(validator("comparison.schema.json").iter_errors(c), key=str) == []
    assert "discovery" not in compare([a, b], metrics=["accuracy"])


def test_the_cap_reaches_compare(runs):
    a, b, _, _ = runs
    c = compare([a, b], metrics=["accuracy"], discover=True, discover_max_candidates=3)
    assert c["discovery"][0]["result"]["candidates"] == {"possible": 6 + 8, "tested": 3, "cap": 3}


def test_both_schemas_define_discovery_alike():
    assert (
        load_schema("comparison.schema.json")["$defs"]["discovery"]
        == load_schema("eval_results.schema.json")["$defs"]["discovery"]
    )
