"""The comparison's "Which data" section (compare/attribution.py, report/attribution.py): shown when the newest run
carries an attribution, on the slice that moved most, escaped in markdown; a malformed or hostile attribution drops
the section with a warning and never breaks the comparison."""

from __future__ import annotations

import json

import pytest

from tests.compare_fakes import make_run, records
from verifily_action.compare import compare
from verifily_action.report.comparison import markdown
from verifily_action.runs.layout import ATTRIBUTION_ROWS, ATTRIBUTION_SEGMENTS, attribution_dir
from verifily_action.schemas import validator

pytestmark = pytest.mark.unit


def _segment(key, value, rows, total, lo, hi, verdict):
    return {"key": key, "value": value, "rows": rows, "sum": total, "per_row": total / rows, "ci_low": lo,
            "ci_high": hi, "verdict": verdict}  # fmt: skip


def _attribution(run, rows, *, slices=None):
    folder = attribution_dir(run, "knn-shapley")
    folder.mkdir(parents=True)
    overall = [
        _segment("origin", "imdb", 40, 0.31, 0.28, 0.34, "helped"),
        _segment("origin", "scraped", 10, -0.02, -0.03, -0.01, "hurt"),
    ]
    doc = {"schema_version": 1, "method": "knn-shapley", "confidence": 0.95, "utility": 0.29, "overall": overall,
           "slices": slices or []}  # fmt: skip
    (folder / ATTRIBUTION_SEGMENTS).write_text(json.dumps(doc))
    (folder / ATTRIBUTION_ROWS).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(i, value, text="a review", **extra):
    return {"id": f"r{i}", "tags": {"origin": "imdb"}, "label": "positive", "text": text, "value": value,
            "slices": {}, **extra}  # fmt: skip


@pytest.fixture
def runs(tmp_path):
    a = make_run(tmp_path, "a", records({"human": 300, "synthetic": 300}, {"human": 0.85, "synthetic": 0.8}, seed=1))
    b = make_run(tmp_path, "b", records({"human": 300, "synthetic": 300}, {"human": 0.85, "synthetic": 0.7}, seed=2))
    return a, b


def test_which_data_shows_the_moved_slices_segments_and_lowest_rows(runs):
    a, b = runs
    seg = [_segment("origin", "scraped", 10, -0.05, -0.07, -0.03, "hurt")]
    _attribution(b, [_row(i, 0.01 - i / 1000) for i in range(30)], slices=[{"slice": "source=synthetic",
                 "key": {"source": "synthetic"}, "n": 300, "segments": seg}])  # fmt: skip
    comparison = compare([a, b])
    block = comparison["which_data"]
    assert block["slice"] == "source=synthetic" and block["moved"] < 0  # synthetic dropped ~10 pts
    assert block["segments"] == [{k: v for k, v in seg[0].items() if k != "per_row"}]
    assert [r["id"] for r in block["harmful_rows"]] == [f"r{i}" for i in range(29, 19, -1)]  # lowest first
    assert not list(validator("comparison.schema.json").iter_errors(comparison))
    md = markdown(comparison)
    assert "#### Which data (knn-shapley of b, on slice source=synthetic" in md and "▼ hurt" in md
    assert md.index("| -0.019 | r29") < md.index("| -0.018 | r28")


def test_no_attribution_no_section(runs):
    comparison = compare(list(runs))
    assert "which_data" not in comparison and "Which data" not in markdown(comparison)


def test_hostile_text_is_escaped(runs):
    a, b = runs
    evil = "<img src=x onerror=alert(1)> @org/team ![x](https://evil) | \u202e"
    _attribution(b, [_row(0, -0.5, text=evil, label="<b>pos</b>")])
    md = markdown(compare([a, b]))
    section = md[md.index("#### Which data") :]
    assert "<img" not in section and "@org/team" not in section and "](https" not in section and "\u202e" not in section
    assert "<b>" not in section


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([_row(0, float("nan"))], "value is not a finite number"),
        ([_row(0, "0.1")], "value is not a finite number"),
        ([{**_row(0, 0.1), "tags": {"origin": 3}}], "tags is not an object of strings"),
        ([{**_row(0, 0.1), "id": None}], "id is not a string"),
    ],
)
def test_a_malformed_attribution_is_a_warning(runs, rows, why):
    a, b = runs
    folder = attribution_dir(b, "knn-shapley")
    _attribution(b, [])
    (folder / ATTRIBUTION_ROWS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    comparison = compare([a, b])
    assert "which_data" not in comparison
    assert any("the attribution of b is not shown" in w and why in w for w in comparison["warnings"]), comparison[
        "warnings"
    ]


def test_a_tracin_attribution_of_generation_rows_is_shown_too(runs):
    """tracin's rows carry no label for prompt/response data; the section shows them with an empty label."""
    a, b = runs
    _attribution(b, [{k: v for k, v in _row(i, -i / 100).items() if k != "label"} for i in range(3)])
    attribution_dir(b, "knn-shapley").rename(attribution_dir(b, "tracin"))
    block = compare([a, b])["which_data"]
    assert block["method"] == "tracin" and [r["label"] for r in block["harmful_rows"]] == ["", "", ""]
    assert "#### Which data (tracin of b" in markdown(compare([a, b]))
