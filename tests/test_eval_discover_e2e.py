"""`verifily eval --discover` on a real run: all-MiniLM-L6-v2 + LoRA trained for a few steps on sentences with an
obvious signal, evaluated on rows tagged origin x source where one combination (origin=x & source=y) is mislabelled,
so every model that learned the signal gets it wrong. Discovery must name that combination, in the JSON, in
eval_results.json and in the terminal, and say how many candidates it searched under its cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders import cls_rows, write_config, write_dataset
from verifily_action.schemas import validator

pytestmark = pytest.mark.integration

ORIGINS, SOURCES = ("a", "b", "x"), ("y", "z")


def _tagged(rows: list[dict]) -> list[dict]:
    """Tags origin and source on a grid; origin=x & source=y rows get the other label."""
    flip = {"positive": "negative", "negative": "positive"}
    out = []
    for i, row in enumerate(rows):
        origin, source = ORIGINS[i % 3], SOURCES[(i // 3) % 2]
        label = flip[row["label"]] if (origin, source) == ("x", "y") else row["label"]
        out.append(dict(row, label=label, tags={"origin": origin, "source": source}))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("verifily_action.train")
    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    base = tmp_path_factory.mktemp("discover_e2e")
    datasets = base / "datasets"
    train_rows = [dict(r, tags={"origin": "a", "source": "z"}) for r in cls_rows(160, seed=0)]
    write_dataset(datasets, "toy", "v1", {"train": train_rows, "eval": _tagged(cls_rows(240, seed=1))}, license="test")
    config = write_config(
        base / "train.yaml",
        task="classification",
        model="all-MiniLM-L6-v2",
        dataset="toy@v1",
        datasets_root=str(datasets),
        lora={"r": 4, "alpha": 8},
        training={"max_steps": 12, "batch_size": 16, "learning_rate": 0.005, "max_length": 32, "seed": 0},
        eval={"slice_by": ["source"], "batch_size": 60, "min_slice_size": 20},
        output_dir=str(base / "runs"),
        run_name="discover",
    )
    run_dir = train(TrainOptions(config=config), echo=lambda s: None).run_dir
    return {"run": run_dir, "datasets": datasets}


def test_eval_discover_names_the_mislabelled_combination(run, cli):
    args = ["eval", "--run", str(run["run"]), "--datasets-root", str(run["datasets"]), "--discover"]
    res = cli(*args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    results = json.loads(res.stdout)
    assert sorted(validator("eval_results.schema.json").iter_errors(results), key=str) == []
    found = results["discovery"]["found"]
    assert found and found[0]["key"] == {"origin": "x", "source": "y"}, found
    assert found[0]["value"] < found[0]["rest"] and found[0]["q_value"] < 0.05
    # 3 origins + 2 sources, 6 pairs, each of 40 rows of 240
    assert results["discovery"]["candidates"] == {"possible": 11, "tested": 11, "cap": 1000}
    on_disk = json.loads((run["run"] / "eval" / "toy@v1-eval" / "eval_results.json").read_text(encoding="utf-8"))
    assert on_disk["discovery"] == results["discovery"]

    table = cli(*args, "--discover-max-candidates", "4")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "discovery: 4 of 11 candidate slices tested (the largest; cap 4)" in table.stdout
    assert "worst slices" in table.stdout
