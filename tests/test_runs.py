"""Run folders: atomic writes, hash chain, run key, cache lookup, load_run errors, schemas."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.builders import RECORDED_META, recorded_run
from verifily_action.config import from_dict
from verifily_action.errors import VerifilyError
from verifily_action.hashing import sha256_json
from verifily_action.runs import cache, chain, files, folder
from verifily_action.schemas import validator

pytestmark = pytest.mark.unit

CFG = {"task": "classification", "model": "m", "dataset": "ds@v1"}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    files.write_json_atomic(tmp_path / "x.json", {"a": 1})
    files.write_json_atomic(tmp_path / "x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    files.write_json_atomic(tmp_path / "x.json", {"a": 1})
    with pytest.raises(ValueError):
        files.write_json_atomic(tmp_path / "x.json", {"a": float("nan")})  # allow_nan=False
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}


def test_chain_intact_and_root_hash(tmp_path):
    d = recorded_run(tmp_path / "r")
    assert chain.verify_chain(d) == []
    entries = chain.read_entries(d)
    assert folder.load_run(d).meta["root_hash"] == sha256_json(entries)
    assert validator("hashes.schema.json").is_valid(json.loads((d / "hashes.json").read_text()))
    assert validator("run_meta.schema.json").is_valid(json.loads((d / "run_meta.json").read_text()))


def test_chain_detects_changed_missing_and_config(tmp_path):
    d = recorded_run(tmp_path / "r")
    (d / "adapter" / "adapter_model.safetensors").write_bytes(b"tampered")
    (d / "train_log.jsonl").unlink()
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["training"]["learning_rate"] = 0.5
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    msgs = " | ".join(p.message for p in chain.verify_chain(d))
    assert "adapter/adapter_model.safetensors changed" in msgs
    assert "train_log.jsonl is listed in hashes.json but missing" in msgs
    assert "config:canonical changed" in msgs
    assert "config.yaml changed" in msgs


def test_chain_detects_root_mismatch(tmp_path):
    d = recorded_run(tmp_path / "r")
    folder.update_meta(d, root_hash="0" * 64)
    assert any("root_hash" in p.message for p in chain.verify_chain(d))


def test_add_artifacts_extends_chain(tmp_path):
    d = recorded_run(tmp_path / "r")
    old = folder.load_run(d).meta["root_hash"]
    ev = d / "eval" / "ds@v1-eval"
    ev.mkdir(parents=True)
    (ev / "eval_results.json").write_text("{}")
    (ev / "predictions.jsonl").write_text("")
    root = chain.add_artifacts(d, [ev / "eval_results.json", ev / "predictions.jsonl"])
    assert root != old and folder.load_run(d).meta["root_hash"] == root
    assert "eval/ds@v1-eval/eval_results.json" in chain.read_entries(d)
    assert chain.verify_chain(d) == []
    (ev / "eval_results.json").write_text('{"x": 1}')
    assert len(chain.verify_chain(d)) == 1


def test_add_artifacts_refuses_outside_files(tmp_path):
    d = recorded_run(tmp_path / "r")
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(VerifilyError, match="outside the run folder"):
        chain.add_artifacts(d, [tmp_path / "other.txt"])


def test_run_key_ignores_paths_but_not_settings():
    cfg = from_dict(CFG).to_dict()
    base = dict(dataset_hash="d", eval_dataset_hash=None, config=cfg, model_hash="m", version="1")
    key = cache.run_key(**base)
    moved = dict(cfg, output_dir="elsewhere", cache_dir="/cache", run_name="x", datasets_root="/data", model="/abs/m")
    assert cache.run_key(**{**base, "config": moved}) == key
    lr = json.loads(json.dumps(cfg))
    lr["training"]["learning_rate"] = 0.1
    assert cache.run_key(**{**base, "config": lr}) != key
    assert cache.run_key(**{**base, "dataset_hash": "d2"}) != key
    assert cache.run_key(**{**base, "model_hash": "m2"}) != key
    assert cache.run_key(**{**base, "version": "2"}) != key


def test_find_cached_only_completed_intact_runs(tmp_path):
    key = "a" * 64
    assert cache.find_cached(tmp_path, key) is None
    recorded_run(tmp_path / "failed", status="failed")
    recorded_run(tmp_path / "x.partial")
    assert cache.find_cached(tmp_path, key) is None
    good = recorded_run(tmp_path / "good")
    assert cache.find_cached(tmp_path, key) == good
    assert cache.find_cached(tmp_path, "b" * 64) is None
    (good / "train_log.jsonl").write_text("changed")  # a damaged run is not reused
    assert cache.find_cached(tmp_path, key) is None


def test_find_cached_skips_hidden_copies(tmp_path):
    recorded_run(tmp_path / ".good.copy-123")  # a copy on its way in (folder.copy_run) is not a run yet
    assert cache.find_cached(tmp_path, "a" * 64) is None


def test_copy_run_is_byte_for_byte_and_refuses_to_merge(tmp_path):
    src = recorded_run(tmp_path / "src" / "good")
    dest = folder.copy_run(src, tmp_path / "cache" / "good")
    assert chain.verify_chain(dest) == [] and cache.find_cached(tmp_path / "cache", "a" * 64) == dest
    assert files.read_json(dest / "run_meta.json") == files.read_json(src / "run_meta.json")
    (tmp_path / "other" / "good").mkdir(parents=True)
    (tmp_path / "other" / "good" / "x").write_text("not a run")
    with pytest.raises(OSError):
        folder.copy_run(src, tmp_path / "other" / "good")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["good"]  # no temporary copy left
    assert [p.name for p in (tmp_path / "other" / "good").iterdir()] == ["x"]


def test_load_run_errors(tmp_path):
    with pytest.raises(VerifilyError, match="not a run folder"):
        folder.load_run(tmp_path)
    (tmp_path / "r.partial").mkdir()
    with pytest.raises(VerifilyError) as e:
        folder.load_run(tmp_path / "r")
    assert "--resume" in (e.value.hint or "")
    d = recorded_run(tmp_path / "f", status="failed", error="boom")
    assert folder.load_run(d).status == "failed"
    with pytest.raises(VerifilyError, match="not completed.*boom"):
        folder.load_run(d, require_completed=True)
    run = folder.load_run(recorded_run(tmp_path / "ok"), require_completed=True)
    assert run.config.task == "classification" and run.meta["label_map"] == {"neg": 0, "pos": 1}


def test_finalize_renames_and_replaces(tmp_path):
    p = tmp_path / "r.partial"
    p.mkdir()
    (p / "a").write_text("new")
    old = tmp_path / "r"
    old.mkdir()
    (old / "a").write_text("old")
    final = folder.finalize(p)
    assert final == old and (final / "a").read_text() == "new" and not p.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r"]


def test_run_meta_schema_rejects_bad_status():
    assert not validator("run_meta.schema.json").is_valid({**RECORDED_META, "status": "done"})
    assert not validator("run_meta.schema.json").is_valid({k: v for k, v in RECORDED_META.items() if k != "run_key"})
