"""Segment attribution by retraining (`attribute --method loo|segment-shapley`): a planted segment of shuffled-label
rows (its own `origin`) is named the harmful one by leave-one-segment-out through real MiniLM retrains, and exact
segment Shapley values add up to the run's score (the arithmetic: tests/test_attribute_retrain.py)."""

from __future__ import annotations

import json
import random

import pytest

from tests.builders import write_config, write_dataset
from tests.paths import DEMO_ROOT
from verifily_action.attribute import retrain
from verifily_action.runs.layout import attribution_dir

DEMO = DEMO_ROOT / "ds_demo" / "v1"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DEMO.is_dir(), reason="examples/datasets/ds_demo/v1 not built"),
]


# ---------------------------------------------------------------- through the CLI (integration)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A MiniLM run on 200 human rows (origin clean) and 150 synthetic rows whose labels were shuffled (origin
    scraped), evaluated on 300 held-out rows. Two segments: segment Shapley's retrains are leave-one-out's (cached)."""
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    tmp = tmp_path_factory.mktemp("planted")
    rnd = random.Random(5)
    rows = [json.loads(x) for x in (DEMO / "train.jsonl").read_text().splitlines()]
    human = [r for r in rows if r["tags"]["source"] == "human"]
    synthetic = [r for r in rows if r["tags"]["source"] == "synthetic"]
    clean = rnd.sample(human, 200)
    for r in clean:
        r["tags"] = {"origin": "clean"}
    scraped = rnd.sample(synthetic, 150)
    labels = [r["label"] for r in scraped]
    rnd.shuffle(labels)
    for r, label in zip(scraped, labels, strict=True):
        r["label"], r["tags"] = label, {"origin": "scraped"}
    ev = rnd.sample([json.loads(x) for x in (DEMO / "eval.jsonl").read_text().splitlines()], 300)
    write_dataset(tmp / "datasets", "planted", "v1", {"train": clean + scraped, "eval": ev})
    cfg = {
        "task": "classification", "model": "all-MiniLM-L6-v2", "dataset": "planted@v1",
        "datasets_root": str(tmp / "datasets"), "output_dir": str(tmp / "runs"),
        "training": {"max_steps": 16, "batch_size": 16, "learning_rate": 0.003, "scheduler": "constant",
                     "max_length": 48, "logging_steps": 4},
    }  # fmt: skip
    res = job.train(TrainOptions(config=write_config(tmp / "train.yaml", **cfg)), echo=lambda s: None)
    evaluate_run(res.run_dir, EvalOptions())
    return res.run_dir


def test_leave_one_segment_out_names_the_planted_segment(cli, planted_run):
    out = cli("attribute", "--run", str(planted_run), "--method", "loo", "--by", "origin", "--jobs", "2")
    assert out.returncode == 0, out.stderr
    assert "2 retrain(s)" in out.stderr
    seg = json.loads((attribution_dir(planted_run, "loo") / "segments.json").read_text())
    overall = {s["value"]: s for s in seg["overall"]}
    assert set(overall) == {"clean", "scraped"}
    assert overall["scraped"]["verdict"] == "hurt" and overall["scraped"]["ci_high"] < 0
    assert overall["clean"]["verdict"] != "hurt" and overall["clean"]["sum"] > overall["scraped"]["sum"]  # not flagged
    method = json.loads((attribution_dir(planted_run, "loo") / "method.json").read_text())
    assert [r["dropped"] for r in method["retrains"]] == [["clean"], ["scraped"]]
    for r in method["retrains"]:  # each retrain is an ordinary run whose chain holds
        assert cli("reproduce", "--verify-only", str(planted_run.parent / r["run"])).returncode == 0
    assert cli("reproduce", "--verify-only", str(planted_run)).returncode == 0


def test_segment_shapley_values_add_up_to_the_runs_accuracy(cli, planted_run):
    over = cli("attribute", "--run", str(planted_run), "--method", "segment-shapley", "--by", "origin", "--budget", "1")
    assert over.returncode == 2 and "needs 2 retrains, over --budget 1" in over.stderr
    assert not attribution_dir(planted_run, "segment-shapley").exists()
    out = cli("attribute", "--run", str(planted_run), "--method", "segment-shapley", "--by", "origin", "--jobs", "2")
    assert out.returncode == 0, out.stderr
    seg = json.loads((attribution_dir(planted_run, "segment-shapley") / "segments.json").read_text())
    assert abs(sum(s["sum"] for s in seg["overall"]) - _accuracy(planted_run)) < 1e-9
    assert min(seg["overall"], key=lambda s: s["sum"])["value"] == "scraped"


def _accuracy(run) -> float:
    results = json.loads(next((run / "eval").glob("*/eval_results.json")).read_text())
    return results["overall"]["accuracy"]["value"]


def test_several_seeds_average_the_retrains_and_the_full_data(cli, planted_run):
    """--seeds 2: every coalition is trained with the run's seed and the next; the full data too, so the values add
    up to the mean accuracy of the run and its other-seed twin."""
    over = cli("attribute", "--run", str(planted_run), "--method", "segment-shapley", "--by", "origin", "--seeds",
               "2", "--budget", "4")  # fmt: skip
    assert over.returncode == 2 and "with 2 seed(s) needs 5 retrains" in over.stderr
    out = cli("attribute", "--run", str(planted_run), "--method", "segment-shapley", "--by", "origin", "--seeds",
              "2", "--jobs", "2")  # fmt: skip
    assert out.returncode == 0, out.stderr
    folder = attribution_dir(planted_run, "segment-shapley")
    method = json.loads((folder / "method.json").read_text())
    assert method["seeds"] == [42, 43] and len(method["retrains"]) == 5
    (twin,) = [r["run"] for r in method["retrains"] if r["dropped"] == []]
    full = (_accuracy(planted_run) + _accuracy(planted_run.parent / twin)) / 2
    seg = json.loads((folder / "segments.json").read_text())
    assert abs(sum(s["sum"] for s in seg["overall"]) - full) < 1e-9
    assert all(s["ci_low"] <= s["sum"] <= s["ci_high"] for s in seg["overall"])


def test_segment_methods_refuse_bad_input(cli, planted_run):
    two = cli("attribute", "--run", str(planted_run), "--method", "loo", "--by", "origin", "--by", "x")
    assert two.returncode == 2 and "one tag key at a time" in two.stderr
    unknown = cli("attribute", "--run", str(planted_run), "--method", "loo", "--by", "color")
    assert unknown.returncode == 2 and "--by color: no train row has that tag" in unknown.stderr


def test_monte_carlo_segment_shapley_is_wired_through(cli, planted_run, monkeypatch):
    """The sampled-orderings path end to end, with every retrain standing in for the run itself (so each non-empty
    coalition scores the run's accuracy and the estimate must give it all to whichever segment comes first)."""
    monkeypatch.setattr(retrain, "MAX_EXACT", 1)
    monkeypatch.setattr(retrain, "retrain_all", lambda run, jobs, *a: {(d, s): run.dir for d, s, _, _ in jobs})
    out = cli("attribute", "--run", str(planted_run), "--method", "segment-shapley", "--by", "origin")
    assert out.returncode == 0, out.stderr
    assert "sampled orderings (Monte Carlo)" in out.stderr
    folder = attribution_dir(planted_run, "segment-shapley")
    method = json.loads((folder / "method.json").read_text())
    assert method["orderings"] == retrain.MAX_ORDERINGS  # two segments: every ordering reuses the same 2 retrains
    assert method["interval"] == (
        "value +- z x sqrt(var over eval-row resamples + var of the marginal gains over the sampled orderings / their "
        "number)"
    )
    seg = json.loads((folder / "segments.json").read_text())
    assert abs(sum(s["sum"] for s in seg["overall"]) - _accuracy(planted_run)) < 1e-9
