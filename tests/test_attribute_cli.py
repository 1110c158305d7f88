"""`verifily attribute` end to end: a real MiniLM classification run on demo rows with 10% of the train labels
flipped (seeded); KNN-Shapley on the run's own embeddings must rank the flipped rows lowest, write
attribution/knn-shapley/ into the run's hash chain, and refuse bad input before writing anything."""

from __future__ import annotations

import json
import random

import pytest

from tests.builders import recorded_run, write_config, write_dataset
from tests.paths import DEMO_ROOT
from verifily_action.runs.layout import ATTRIBUTION, ATTRIBUTION_FILES, attribution_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (DEMO_ROOT / "ds_demo" / "v1").is_dir(), reason="examples/datasets/ds_demo/v1 not built"),
]

N_TRAIN, N_EVAL, FLIPPED = 300, 300, 30


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    """(run folder, datasets root, ids of the rows whose label was flipped)."""
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    tmp = tmp_path_factory.mktemp("attribute")
    demo = DEMO_ROOT / "ds_demo" / "v1"
    rnd = random.Random(11)
    train = rnd.sample([json.loads(x) for x in (demo / "train.jsonl").read_text().splitlines()], N_TRAIN)
    ev = rnd.sample([json.loads(x) for x in (demo / "eval.jsonl").read_text().splitlines()], N_EVAL)
    flipped = set(rnd.sample(range(N_TRAIN), FLIPPED))
    for i in flipped:
        train[i]["label"] = "negative" if train[i]["label"] == "positive" else "positive"
    write_dataset(tmp / "datasets", "noisy", "v1", {"train": train, "eval": ev})
    cfg = {
        "task": "classification", "model": "all-MiniLM-L6-v2", "dataset": "noisy@v1",
        "datasets_root": str(tmp / "datasets"), "output_dir": str(tmp / "runs"), "eval": {"slice_by": ["source"]},
        "training": {"max_steps": 8, "batch_size": 16, "learning_rate": 0.003, "scheduler": "constant",
                     "max_length": 48, "logging_steps": 4},
    }  # fmt: skip
    res = job.train(TrainOptions(config=write_config(tmp / "train.yaml", **cfg)), echo=lambda s: None)
    return res.run_dir, tmp / "datasets", {train[i]["id"] for i in flipped}


def _auc(scores: list[float], positives: list[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_knn_shapley_finds_the_flipped_labels_and_seals_its_files(cli, noisy_run):
    run, _, flipped = noisy_run
    out = cli("attribute", "--run", str(run), "--by", "source", "--by", "origin", "--resamples", "200")
    assert out.returncode == 0, out.stderr
    assert "lowest-valued train rows" in out.stdout and "source=human" in out.stdout
    folder = attribution_dir(run, "knn-shapley")
    assert sorted(p.name for p in folder.iterdir()) == sorted(ATTRIBUTION_FILES)
    rows = [json.loads(x) for x in (folder / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == N_TRAIN and {r["id"] for r in rows} >= flipped
    auc = _auc([-r["value"] for r in rows], [r["id"] in flipped for r in rows])
    assert auc >= 0.85, f"mislabel detection AUC {auc:.3f}"
    assert set(rows[0]["slices"]) == {"source=human", "source=synthetic"}

    segments = json.loads((folder / "segments.json").read_text())
    method = json.loads((folder / "method.json").read_text())
    overall = segments["overall"]
    assert {(s["key"], s["value"]) for s in overall} >= {("source", "human"), ("source", "synthetic")}
    by_source = [s for s in overall if s["key"] == "source"]
    # a key's segments partition the rows: their sums add up to the utility, the KNN classifier's accuracy
    assert sum(s["rows"] for s in by_source) == N_TRAIN
    assert abs(sum(s["sum"] for s in by_source) - segments["utility"]) < 1e-9
    assert abs(sum(r["value"] for r in rows) - segments["utility"]) < 1e-9
    assert all(s["ci_low"] <= s["sum"] <= s["ci_high"] for s in overall)
    assert method["k"] == 5 and method["train"]["n"] == N_TRAIN and method["eval"]["n"] == N_EVAL

    verify = cli("reproduce", "--verify-only", str(run))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    original = (folder / "rows.jsonl").read_text()
    (folder / "rows.jsonl").write_text(original.replace('"value": -', '"value": ', 1))
    tampered = cli("reproduce", "--verify-only", str(run))
    assert tampered.returncode == 1 and "attribution/knn-shapley/rows.jsonl" in tampered.stderr
    (folder / "rows.jsonl").write_text(original)  # the run is shared with the tests below


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "shapley-magic"], "unknown attribution method 'shapley-magic'"),
        (["--method", "tracin", "--by", "color"], "--by color: no train row has that tag"),
        (["--by", "color"], "--by color: no train row has that tag"),
        (["--k", "0"], "--k"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(cli, noisy_run, args, message):
    run, _, _ = noisy_run
    before = sorted(p.relative_to(run) for p in run.rglob("*") if ATTRIBUTION not in p.parts)
    hashes = (run / "hashes.json").read_bytes()
    out = cli("attribute", "--run", str(run), *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.relative_to(run) for p in run.rglob("*") if ATTRIBUTION not in p.parts) == before
    assert (run / "hashes.json").read_bytes() == hashes


def test_a_generation_run_is_refused(cli, tmp_path):
    run = recorded_run(tmp_path / "sft-run", task="sft")
    out = cli("attribute", "--run", str(run))
    assert out.returncode == 2 and "KNN-Shapley values classification runs; this run's task is sft" in out.stderr
    assert not (run / ATTRIBUTION).exists()


def test_derive_drops_the_rows_valued_below_zero(cli, noisy_run):
    """Close the loop: the rows KNN-Shapley values below 0 go into a new version whose manifest names the run."""
    from verifily_action.datasets import resolve

    run, datasets, flipped = noisy_run
    if not attribution_dir(run, "knn-shapley").is_dir():
        assert cli("attribute", "--run", str(run), "--resamples", "100").returncode == 0
    rows = [json.loads(x) for x in (attribution_dir(run, "knn-shapley") / "rows.jsonl").read_text().splitlines()]
    below = {r["id"] for r in rows if r["value"] < 0}
    out = cli(
        "dataset", "derive", "noisy@v1", "--to", "v1-clean", "--drop-below", "0", "--run", str(run),
        "--datasets-root", str(datasets),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    child = resolve("noisy@v1-clean", datasets)
    assert child.splits["train"][0].rows == N_TRAIN - len(below)
    d = child.data["derivation"]
    assert d["rule"] == "knn-shapley value < 0" and d["attribution"]["method"] == "knn-shapley"
    assert d["attribution"]["root_hash"] == json.loads((run / "run_meta.json").read_text())["root_hash"]
    assert len(below & flipped) > len(below) / 2  # most rows valued below 0 are the flipped ones


def test_the_action_attributes_when_the_config_asks(noisy_run, capsys):
    """`attribute:` in the config: the Action's evaluate stage writes the attribution (so the comparison and the PR
    comment get their 'Which data' section); an attribution that fails is a warning, not a failed job."""
    import yaml

    from verifily_action.action.inputs import Inputs
    from verifily_action.action.stages import Pipeline

    run, datasets, _ = noisy_run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["attribute"] = {"method": "knn-shapley", "by": ["source"]}
    config = run.parent / "attribute.yaml"
    config.write_text(yaml.safe_dump(cfg))
    Pipeline().evaluate(run, Inputs(config=str(config)))
    segments = json.loads((attribution_dir(run, "knn-shapley") / "segments.json").read_text())
    assert {s["key"] for s in segments["overall"]} == {"source"}  # this config's, not an earlier --by origin
    cfg["attribute"] = {"method": "knn-shapley", "by": ["color"]}
    config.write_text(yaml.safe_dump(cfg))
    Pipeline().evaluate(run, Inputs(config=str(config)))
    out = capsys.readouterr().out
    assert "::warning::attribution (knn-shapley) failed: --by color: no train row has that tag" in out
