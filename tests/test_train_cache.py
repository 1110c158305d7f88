"""The run cache folder (`cache_dir`, VERIFILY_RUN_CACHE, --cache-dir) shared by output folders, and the data-check
notes `train` prints: tiny llama sft runs on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.builders import GENERATED, write_config, write_dataset
from tests.tiny_models import make_tiny_llama
from verifily_action.config import load_config
from verifily_action.runs import chain, files, layout
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions, _cache_dir, describe, make_plan

pytestmark = pytest.mark.integration

TRAINING = {"max_steps": 2, "batch_size": 4, "max_length": 64, "logging_steps": 1, "learning_rate": 0.01}


def qa_rows(n: int, start: int = 0) -> list[dict]:
    """Rows with distinct prompts, so the data checks find only what a test adds."""
    return [
        {"id": f"q{i}", "prompt": f"Question: what comes after {i}?", "response": f"Answer: {i + 1}."}
        for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache_assets")
    root = d / "datasets"
    train = qa_rows(12)
    dup = dict(train[3], id="dup")  # the same content as q3 under another id
    leak = dict(train[5], id="leak", response="Answer: six.")  # an eval prompt the train split has
    write_dataset(root, "clean", "v1", {"train": train, "eval": qa_rows(4, 100)}, task="sft", **GENERATED)
    write_dataset(
        root, "dirty", "v1", {"train": [*train, dup], "eval": [*qa_rows(3, 100), leak]}, task="sft", **GENERATED
    )
    return {"root": root, "model": make_tiny_llama(d / "llama")}


@pytest.fixture(autouse=True)
def _no_run_cache_env(monkeypatch):
    monkeypatch.delenv("VERIFILY_RUN_CACHE", raising=False)


def sft_config(folder: Path, assets, dataset: str = "clean@v1", **extra) -> Path:
    """`folder`/train.yaml: the tiny llama on `dataset` for a few steps, plus `extra`."""
    return write_config(
        folder / "train.yaml",
        sort_keys=True,
        task="sft",
        model=str(assets["model"]),
        dataset=dataset,
        datasets_root=str(assets["root"]),
        training=TRAINING,
        **extra,
    )


def test_cache_folder_shared_by_output_folders(tmp_path, assets, cli):
    cache = tmp_path / "cache"
    # cache_dir is relative to the config file
    cfg_a = sft_config(tmp_path / "a", assets, output_dir=str(tmp_path / "A"), cache_dir="../cache")
    said: list[str] = []
    first = job.train(TrainOptions(config=cfg_a), echo=said.append)
    assert not first.cached and first.run_dir.parent == tmp_path / "A"
    stored = cache / first.run_dir.name
    assert chain.verify_chain(stored) == [] and any(f"copied to the run cache: {stored}" in s for s in said)
    assert yaml.safe_load((first.run_dir / "config.yaml").read_text())["cache_dir"] == str(cache)

    # another output folder, the same cache folder: the run is copied from the cache, not trained
    cfg_b = sft_config(tmp_path / "b", assets, output_dir=str(tmp_path / "B"), cache_dir=str(cache))
    plan = make_plan(TrainOptions(config=cfg_b))
    assert plan.run_key == first.meta["run_key"]  # cache_dir is not in the key
    assert f"cached: {stored} has this run key (train would copy it to the run folder" in describe(plan)
    said = []
    hit = job.train(TrainOptions(config=cfg_b), echo=said.append)
    assert hit.cached and hit.run_dir == tmp_path / "B" / first.run_dir.name
    assert any(s.startswith(f"cached: run {stored}") and "copied from the run cache" in s for s in said), said
    assert not any(s.startswith(("training ", "device ", "step ")) for s in said), said  # nothing trained
    assert chain.verify_chain(hit.run_dir) == [] and hit.meta["root_hash"] == first.meta["root_hash"]
    assert (hit.run_dir / "train_log.jsonl").read_bytes() == (first.run_dir / "train_log.jsonl").read_bytes()
    assert not list((tmp_path / "B").glob(".*"))  # no temporary copy left behind

    # the flag, from a third output folder, through the real CLI: stdout is the copied run
    r = cli("train", "--config", str(sft_config(tmp_path / "c", assets)), "--output-dir", str(tmp_path / "C"),
            "--cache-dir", str(cache))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "cached: run" in r.stderr and "copied from the run cache" in r.stderr and "step " not in r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]) == tmp_path / "C" / first.run_dir.name

    # --force retrains; the cache keeps the intact run it holds for this key
    said = []
    forced = job.train(TrainOptions(config=cfg_b, force=True), echo=said.append)
    assert not forced.cached and forced.run_dir == hit.run_dir and forced.meta["id"] != first.meta["id"]
    assert any(s.startswith("training ") for s in said)
    assert any(f"the run cache already holds this run key: {stored}" in s for s in said)
    assert files.read_json(stored / layout.RUN_META)["id"] == first.meta["id"]


def test_cache_hit_does_not_overwrite_a_different_run(tmp_path, assets):
    cache = tmp_path / "cache"
    job.train(TrainOptions(config=sft_config(tmp_path / "a", assets, run_name="r"), output_dir=str(tmp_path / "A"),
                           cache_dir=str(cache)), echo=lambda s: None)  # fmt: skip
    (tmp_path / "B" / "r").mkdir(parents=True)  # something else already has the name
    said: list[str] = []
    cfg_b = sft_config(tmp_path / "b", assets, run_name="r", output_dir=str(tmp_path / "B"))
    hit = job.train(TrainOptions(config=cfg_b, cache_dir=str(cache)), echo=said.append)
    assert hit.cached and hit.run_dir == (cache / "r").resolve()
    assert any("was not copied there" in s for s in said) and not list((tmp_path / "B" / "r").iterdir())


def test_cache_dir_precedence(tmp_path, assets, monkeypatch):
    cfg = load_config(sft_config(tmp_path / "cfg", assets, cache_dir="rel"))
    assert _cache_dir(cfg, TrainOptions()) == tmp_path / "cfg" / "rel"
    monkeypatch.setenv("VERIFILY_RUN_CACHE", str(tmp_path / "env"))
    assert _cache_dir(cfg, TrainOptions()) == tmp_path / "env"
    assert _cache_dir(cfg, TrainOptions(cache_dir=str(tmp_path / "flag"))) == tmp_path / "flag"
    monkeypatch.delenv("VERIFILY_RUN_CACHE")
    assert _cache_dir(load_config(sft_config(tmp_path / "none", assets)), TrainOptions()) is None


def test_data_checks_are_printed_as_notes(tmp_path, assets):
    cfg = sft_config(tmp_path, assets, dataset="dirty@v1", output_dir=str(tmp_path / "runs"))
    said: list[str] = []
    res = job.train(TrainOptions(config=cfg), echo=said.append)
    notes = [s for s in said if s.startswith("note: data check:")]
    assert notes == [
        "note: data check: train: 1 row repeating an earlier row (duplicates)",
        "note: data check: eval: 1 row with the same text as a row of train (leakage); "
        "`verifily dataset verify dirty@v1` shows where",
    ], said
    report = json.loads((res.run_dir / "run_meta.json").read_text())["data_report"]
    assert report["duplicates"]["train"] == 1 and report["leakage"]["train/eval"] == 1

    said = []
    job.train(TrainOptions(config=sft_config(tmp_path / "clean", assets, output_dir=str(tmp_path / "runs2"))),
              echo=said.append)  # fmt: skip
    assert not any(s.startswith("note: data check:") for s in said), said


def test_leakage_into_a_separate_eval_dataset_is_noted(tmp_path, assets):
    """With `eval_dataset` the eval rows come from another version: the train rows are checked against those (the
    train version's own eval split is not used, so it is not checked)."""
    cfg = sft_config(tmp_path, assets, eval_dataset="dirty@v1", output_dir=str(tmp_path / "runs"))
    said: list[str] = []
    res = job.train(TrainOptions(config=cfg), echo=said.append)
    notes = [s for s in said if s.startswith("note: data check:")]
    assert notes == [
        "note: data check: dirty@v1:eval: 1 row with the same text as a row of train (leakage); "
        "the run's run_meta.json (data_report) lists where"
    ], said
    report = json.loads((res.run_dir / "run_meta.json").read_text())["data_report"]
    assert report["rows"] == {"train": 12, "dirty@v1:eval": 4} and report["leakage"] == {"train/dirty@v1:eval": 1}
    (where,) = [e for e in report["examples"] if e["check"] == "leakage"]
    assert where["file"].endswith("dirty/v1/eval.jsonl") and where["line"] == 4
