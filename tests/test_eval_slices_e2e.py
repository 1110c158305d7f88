"""Cross-tag slices on a real run: all-MiniLM-L6-v2 + LoRA trained for a few steps on a subset of ds_demo whose
config asks for `eval.slices`, evaluated by `verifily eval`; every slice's metrics against sklearn on its rows, the
bad inputs of the slice grammar, and two evaluations on byte-identical eval files of two versions compared as one
eval set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.builders import write_config, write_dataset
from tests.compare_real import copy_run, demo_config
from tests.paths import DEMO_ROOT

pytestmark = pytest.mark.integration

SLICES = ["source×origin", "source=human & origin=imdb"]
PER_LABEL = {"train": 8, "eval": 10}  # rows per (origin, label) in each split


def write_origins(root: Path) -> Path:
    """ds_demo v1 reduced to a few rows of every origin and label (the eval split: 6 origins x 20 rows), and a v2
    whose files are byte for byte v1's: two versions, one eval set."""
    splits = {}
    for split, k in PER_LABEL.items():
        picked: dict[tuple[str, str], list[str]] = {}
        for line in (DEMO_ROOT / "ds_demo" / "v1" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            bucket = picked.setdefault((row["tags"]["origin"], row["label"]), [])
            if len(bucket) < k:
                bucket.append(line)
        splits[split] = "".join(x + "\n" for _, lines in sorted(picked.items()) for x in lines).encode()
    for version in ("v1", "v2"):
        write_dataset(root, "ds_demo", version, splits, license="see examples/datasets/README.md")
    return root


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    pytest.importorskip("verifily_action.train")
    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    base = tmp_path_factory.mktemp("sliced")
    datasets = write_origins(base / "datasets")
    values = demo_config("v1", str(datasets), str(base / "runs"), run_name="sliced")
    values["eval"] = {"slice_by": ["source"], "slices": SLICES, "batch_size": 40, "min_slice_size": 30}
    run = train(TrainOptions(config=write_config(base / "train.yaml", **values)), echo=lambda s: None).run_dir
    return {"base": base, "datasets": datasets, "run": run}


def _eval(cli, run: Path, datasets: Path, *args: str):
    return cli("eval", "--run", str(run), "--datasets-root", str(datasets), *args)


@pytest.fixture(scope="module")
def evaluated(sliced, tmp_path_factory):
    from tests.cli_runner import run_cli

    run = copy_run(sliced["run"], tmp_path_factory.mktemp("evaluated"))
    res = _eval(run_cli, run, sliced["datasets"], "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    preds = [json.loads(x) for x in (run / "eval/ds_demo@v1-eval/predictions.jsonl").read_text().splitlines()]
    return json.loads(res.stdout), preds


def test_config_slices_are_evaluated(evaluated):
    r, preds = evaluated
    assert r["slicing"] == ["source", "source=*&origin=*", "source=human&origin=imdb"]
    combos: dict[tuple[str, str], int] = {}
    for p in preds:
        combo = (p["tags"]["source"], p["tags"]["origin"])
        combos[combo] = combos.get(combo, 0) + 1
    crossed = [s for s in r["slices"] if len(s["key"]) == 2]
    # every combination some row has, each once (source=human&origin=imdb is one of them), none empty
    assert {(s["key"]["source"], s["key"]["origin"]): s["n"] for s in crossed} == combos
    assert len(crossed) == len(combos) == 6
    for s in r["slices"]:
        assert s["too_small"] is (s["n"] < 30)  # flagged, still there


def test_every_slice_equals_sklearn_on_its_rows(evaluated):
    r, preds = evaluated
    for s in r["slices"]:
        sub = [p for p in preds if all(p["tags"][k] == v for k, v in s["key"].items())]
        refs, out = [p["reference"] for p in sub], [p["prediction"] for p in sub]
        assert s["n"] == len(sub) > 0
        assert s["metrics"]["accuracy"]["value"] == pytest.approx(accuracy_score(refs, out), abs=1e-12)
        # a slice's macro-F1 averages over the labels of its references
        want = f1_score(refs, out, average="macro", labels=sorted(set(refs)), zero_division=0)
        assert s["metrics"]["macro_f1"]["value"] == pytest.approx(want, abs=1e-12), s["key"]


def test_slice_options_and_their_bad_input(sliced, cli, tmp_path):
    run = copy_run(sliced["run"], tmp_path)
    ok = _eval(cli, run, sliced["datasets"], "--slice-by", "origin", "--slice", "origin=nope", "--json")
    assert ok.returncode == 0, ok.stderr
    assert "warning: no eval row has origin=nope" in ok.stderr and "values of origin: " in ok.stderr
    r = json.loads(ok.stdout)
    assert r["slicing"] == ["origin", "origin=nope"]  # the options replace the config's lists
    assert r["slices"][-1] == {"key": {"origin": "nope"}, "n": 0, "too_small": True, "metrics": {}}
    for args, says in [
        (["--slice-by", "source=human &"], "bad slice expression 'source=human &' (--slice-by): a term is missing"),
        (["--slice", "source=human & lang=en"], "no eval row has the tag key lang"),
        (["--slice", "source=*&source=human"], "the key 'source' appears twice at position 10"),
    ]:
        bad = _eval(cli, run, sliced["datasets"], *args)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
        assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    empty = _eval(cli, run, sliced["datasets"], "--slice-by", "source=human &")
    assert empty.stderr.splitlines()[1:3] == ["  source=human &", "  " + " " * 13 + "^"]


def test_byte_identical_eval_files_of_two_versions_are_one_eval_set(sliced, cli, tmp_path):
    """The same model evaluated on ds_demo@v1 and on ds_demo@v2, whose eval files are byte-identical: compared as
    one eval set (no "different datasets" note), paired, and a wildcard gate names every slice it fails on."""
    a = copy_run(sliced["run"], tmp_path / "a")
    b = copy_run(sliced["run"], tmp_path / "b")
    for run, version in ((a, "v1"), (b, "v2")):
        res = _eval(cli, run, sliced["datasets"], "--dataset", f"ds_demo@{version}", "--json")
        assert res.returncode == 0, res.stderr
    ra, rb = (json.loads(next(r.glob("eval/*/eval_results.json")).read_text()) for r in (a, b))
    assert ra["eval_name"] != rb["eval_name"] and ra["dataset"]["hash"] != rb["dataset"]["hash"]
    assert ra["dataset"]["content_hash"] == rb["dataset"]["content_hash"] is not None
    res = cli("compare", "--runs", f"{a},{b}", "--metric", "accuracy", "-f", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert not any("different datasets" in n for n in doc["notes"])
    assert doc["pairing"][0]["paired"] is True
    assert doc["slice_by"] == ["source", "source=*&origin=*", "source=human&origin=imdb"]
    gate = cli("compare", "--runs", f"{a},{b}", "--fail-on", "accuracy@source=*&origin=*>=0")
    assert gate.returncode == 1  # the same model: every change is 0, and 0 >= 0
    failed = [ln for ln in gate.stderr.splitlines() if "FAILED on " in ln]
    crossed = [r["slice"] for r in doc["rows"] if len(r["slice"]) == 2]
    assert len(failed) == len(crossed)
    assert any("FAILED on source=human&origin=imdb for b" in ln for ln in failed)
