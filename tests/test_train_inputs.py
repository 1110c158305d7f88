"""`train` on data it must refuse or count exactly (issue 22, items 14 and 19): an empty train split, a manifest row
count that differs from its file, a lone UTF-16 surrogate (refused with file:line, exit 2, before any model loads;
the failed run's hint says how to retrain), and a dry run whose steps are the steps training takes when rows are left
out after truncation, without transformers' own too-long warning on top of verifily's truncation note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.builders import GENERATED, cls_rows, jsonl, sft_rows, write_config, write_dataset
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration

SURROGATE = {"id": "s1", "text": "broken \ud800 text", "label": "positive", "tags": {"source": "human"}}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("llama") / "llama")


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if training gets as far as loading a tokenizer or a model."""
    from verifily_action.train import models

    def refuse(*args, **kwargs):
        raise AssertionError("a model or tokenizer was loaded")

    monkeypatch.setattr(models, "load_tokenizer", refuse)
    monkeypatch.setattr(models, "load_model", refuse)


def cls_config(tmp_path: Path, train: list[dict] | bytes, **training) -> Path:
    root = tmp_path / "datasets"
    write_dataset(root, "cls", "v1", {"train": train, "eval": cls_rows(8, 1)}, **GENERATED)
    return write_config(
        tmp_path / "train.yaml",
        task="classification",
        model="all-MiniLM-L6-v2",
        dataset="cls@v1",
        datasets_root=str(root),
        output_dir=str(tmp_path / "runs"),
        training={"max_steps": 2, "batch_size": 4, "max_length": 32, **training},
    )


def test_an_empty_train_split_exits_2_naming_its_file_before_any_model_loads(cli, tmp_path, no_model_loads):
    cfg = cls_config(tmp_path, b"")
    train_file = tmp_path / "datasets" / "cls" / "v1" / "train.jsonl"
    for extra in ((), ("--dry-run",)):
        r = cli("train", "--config", str(cfg), *extra)
        assert r.returncode == 2, r.stderr
        assert f"{train_file}: split 'train' has no rows" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_train_checks_the_manifest_row_count_naming_the_file(cli, tmp_path, no_model_loads):
    cfg = cls_config(tmp_path, cls_rows(5))
    manifest = tmp_path / "datasets" / "cls" / "v1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["splits"]["train"]["files"][0]["rows"] = 6
    manifest.write_text(json.dumps(data, indent=2))
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert f"{manifest.parent / 'train.jsonl'}: the manifest says 6 rows, the file has 5" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_lone_surrogate_fails_train_at_its_line_and_the_failed_run_says_retrain(cli, tmp_path, no_model_loads):
    cfg = cls_config(tmp_path, jsonl(cls_rows(7)) + jsonl([SURROGATE]))
    where = f"{tmp_path / 'datasets' / 'cls' / 'v1' / 'train.jsonl'}:8"
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert f"{where} $.text: \\ud800 is a lone UTF-16 surrogate" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("lone UTF-16 surrogate") == 1
    (partial,) = (tmp_path / "runs").glob("*.partial")
    assert yaml.safe_load((partial / "run_meta.json").read_text())["status"] == "failed"
    r = cli("train", "--config", str(cfg))  # the failed run is in the way
    assert r.returncode == 2 and f"an unfinished run is in {partial}" in r.stderr
    assert "it failed (" in r.stderr and "--force retrains it from the start" in r.stderr
    assert "resume it" not in r.stderr


def long_prompt_rows(n: int, long: set[int]) -> list[dict]:
    """sft rows; those in `long` have a prompt of ~600 tokens (beyond max_length and the model's 512)."""
    rows = sft_rows(n)
    for i in long:
        rows[i]["prompt"] = "Question: " + "what is two plus two and then some more? " * 60
    return rows


@pytest.mark.parametrize(
    "n,long,training",
    [
        (50, {3, 17}, {"batch_size": 4}),  # 48 rows train: 12 steps, where the manifest's 50 rows said 13
        (20, set(), {"batch_size": 4, "gradient_accumulation_steps": 2}),  # 5 batches: 3 steps, not 2
    ],
    ids=["rows-left-out", "partial-accumulation"],
)
def test_dry_run_steps_are_the_steps_training_takes(cli_process, tmp_path, llama, n, long, training):
    root = tmp_path / "datasets"
    write_dataset(
        root, "sft", "v1", {"train": long_prompt_rows(n, long), "eval": sft_rows(4, 1)}, task="sft", **GENERATED
    )
    cfg = write_config(
        tmp_path / "train.yaml",
        task="sft",
        model=str(llama),
        dataset="sft@v1",
        datasets_root=str(root),
        output_dir=str(tmp_path / "runs"),
        training={"epochs": 1, "max_length": 64, "logging_steps": 1, **training},
    )
    r = cli_process("train", "--config", str(cfg), "--dry-run", "--json", timeout=900)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert (plan["rows"], plan["trainable_rows"]) == (n, n - len(long))
    r = cli_process("train", "--config", str(cfg), timeout=900)
    assert r.returncode == 0, r.stderr
    meta = json.loads((Path(r.stdout.strip()) / "run_meta.json").read_text())
    assert meta["metrics"]["global_step"] == plan["steps"]
    if long:
        assert f"{len(long)} rows were left out" in r.stderr and f"{len(long)} of {n} rows are longer" in r.stderr
        assert "Token indices sequence length is longer" not in r.stderr  # verifily's truncation note says it
