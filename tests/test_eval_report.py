"""The terminal view of eval_results.json (report/results.py): too-small slices are marked in the table, and the
notes the CLI prints on stderr (truncation) are worded as training words them."""

from __future__ import annotations

import pytest

from verifily_action.report import results as report

pytestmark = pytest.mark.unit


def _iv(v: float) -> dict[str, float]:
    return {"value": v, "ci_low": v - 0.05, "ci_high": v + 0.05}


def _results(**extra) -> dict:
    block = {"accuracy": _iv(0.8), "macro_f1": _iv(0.75)}
    return {
        "eval_name": "senti@v1-eval",
        "run_id": "r1",
        "task": "classification",
        "confidence": 0.95,
        "bootstrap_resamples": 1000,
        "min_slice_size": 30,
        "n": 100,
        "metrics": ["accuracy", "macro_f1"],
        "directions": {"accuracy": "higher", "macro_f1": "higher"},
        "overall": block,
        "slices": [
            {"key": {"source": "human"}, "n": 90, "too_small": False, "metrics": block},
            {"key": {"source": "synthetic"}, "n": 10, "too_small": True, "metrics": block},
            {"key": {"source": "human", "origin": "imdb"}, "n": 0, "too_small": True, "metrics": {}},
        ],
        "failure_breakdown": [],
        "unseen_labels": {"count": 0, "labels": {}},
        **extra,
    }


def _render(table) -> list[str]:
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text().splitlines()


def test_table_marks_slices_under_the_minimum_n():
    lines = _render(report.results_table(_results()))
    row = {line.split("│")[1].strip(): line for line in lines if line.startswith("│")}
    assert set(row) == {
        "overall",
        "source=human",
        "source=synthetic (too small)",
        "source=human&origin=imdb (too small)",
    }
    assert "10" in row["source=synthetic (too small)"] and "0.800 [0.750, 0.850]" in row["source=synthetic (too small)"]
    assert row["source=human&origin=imdb (too small)"].count(" - ") == 2  # n = 0: no metric
    header = next(line for line in lines if "slice" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["slice", "n", "accuracy ↑", "macro_f1 ↑"]


def test_print_results_notes_too_small_slices(capsys):
    report.print_results(_results())
    out = capsys.readouterr().out
    assert "2 slice(s) have fewer than 30 examples" in out


def test_truncation_note_wording():
    assert report.notes(_results()) == []  # files written before truncation was recorded
    none = {"max_length": 64, "truncated": 0, "inputs": 0, "references": 0, "longest": 40}
    assert report.notes(_results(truncation=none)) == []
    cls = {"max_length": 16, "truncated": 3, "inputs": 3, "references": 0, "longest": 41}
    assert report.notes(_results(truncation=cls)) == [
        "3 of 100 rows are longer than max_length 16 tokens and were truncated (longest: 41)"
    ]
    gen = {"max_length": 6, "truncated": 3, "inputs": 1, "references": 3, "longest": 11}
    assert report.notes(_results(truncation=gen)) == [
        "3 of 100 rows are longer than max_length 6 tokens and were truncated (longest: 11; inputs cut: 1, "
        "references cut for the loss: 3)"
    ]
