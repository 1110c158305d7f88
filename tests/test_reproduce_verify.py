"""`verifily reproduce --verify-only` on a real run (all-MiniLM-L6-v2 + LoRA on ds_demo, evaluated): the intact chain
holds, and every kind of tampering is detected and named by file: a flipped byte in every file, a deleted file, an
added file, an edited hashes.json, an edited root hash, an edited run_meta.json field, a changed dataset file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.compare_real import copy_run, shared_runs
from verifily_action.errors import VerifilyError
from verifily_action.runs.verify import verify_run

pytestmark = pytest.mark.integration

EVAL = "eval/ds_demo@v1-eval"
# The layout of a trained and evaluated classification run; `test_the_list_covers_every_file` keeps it complete.
FILES = [
    "run_meta.json",
    "hashes.json",
    "config.yaml",
    "environment.json",
    "train_log.jsonl",
    "adapter/adapter_model.safetensors",
    "adapter/adapter_config.json",
    "adapter/label_map.json",
    "adapter/README.md",
    "tokenizer/tokenizer.json",
    "tokenizer/tokenizer_config.json",
    f"{EVAL}/eval_results.json",
    f"{EVAL}/predictions.jsonl",
    f"{EVAL}/hard_examples.jsonl",
]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return shared_runs(tmp_path_factory)


@pytest.fixture
def run(real, tmp_path):
    """A private copy of the v1 run: each test may damage it."""
    return copy_run(real["v1"], tmp_path)


def names(report) -> str:
    return "\n".join(p.render() for p in report.problems)


def test_the_list_covers_every_file(real):
    have = sorted(p.relative_to(real["v1"]).as_posix() for p in real["v1"].rglob("*") if p.is_file())
    assert have == sorted(FILES)


def test_intact_run_holds_including_its_inputs(real):
    report = verify_run(real["v1"], real["datasets"])
    assert report.ok, names(report)
    entries = json.loads((real["v1"] / "hashes.json").read_text())["entries"]
    # every entry recomputed: run files, config and run_meta canonical forms, dataset files and model files
    assert report.checked == len(entries)
    assert report.notes == []


@pytest.mark.parametrize("rel", FILES)
def test_flipping_one_byte_of_any_file_is_detected(run, rel):
    f = run / rel
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01  # the smallest change: one bit of one byte
    f.write_bytes(bytes(data))
    report = verify_run(run, inputs=False)
    assert not report.ok
    assert any(p.file and Path(p.file) == f for p in report.problems), names(report)


@pytest.mark.parametrize("rel", FILES)
def test_deleting_any_file_is_detected(run, rel):
    (run / rel).unlink()
    report = verify_run(run, inputs=False)
    assert not report.ok
    assert any(p.file and Path(p.file) == run / rel for p in report.problems), names(report)


@pytest.mark.parametrize("rel", ["notes.txt", "adapter/extra.safetensors", f"{EVAL}/more.jsonl", "eval/x/y.json"])
def test_adding_a_file_is_detected(run, rel):
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    (run / rel).write_text("added later\n")
    report = verify_run(run, inputs=False)
    assert [p.file for p in report.problems] == [str(run / rel)]
    assert "not in hashes.json" in report.problems[0].message


def test_editing_an_entry_of_hashes_json_is_detected(run):
    doc = json.loads((run / "hashes.json").read_text())
    doc["entries"]["adapter/adapter_config.json"] = "0" * 64
    (run / "hashes.json").write_text(json.dumps(doc, indent=2))
    text = names(verify_run(run, inputs=False))
    assert "adapter/adapter_config.json changed" in text
    assert "root_hash in run_meta.json does not match hashes.json" in text


def test_rehashing_a_changed_file_still_breaks_the_root(run):
    """Whoever edits a file and its entry must also forge the root hash, which lives in the sealed run_meta."""
    from verifily_action.hashing import sha256_file

    f = run / f"{EVAL}/eval_results.json"
    doc = json.loads(f.read_text())
    doc["overall"]["accuracy"]["value"] = 0.99
    f.write_text(json.dumps(doc))
    hashes = json.loads((run / "hashes.json").read_text())
    hashes["entries"][f"{EVAL}/eval_results.json"] = sha256_file(f)
    (run / "hashes.json").write_text(json.dumps(hashes))
    assert "root_hash in run_meta.json does not match" in names(verify_run(run, inputs=False))


def test_editing_the_root_hash_is_detected(run):
    meta = json.loads((run / "run_meta.json").read_text())
    meta["root_hash"] = "f" * 64
    (run / "run_meta.json").write_text(json.dumps(meta, indent=2))
    assert "root_hash in run_meta.json does not match" in names(verify_run(run, inputs=False))


@pytest.mark.parametrize(("field", "value"), [("status", "failed"), ("metrics", {"train_loss": 0.01}), ("task", "sft")])
def test_editing_a_run_meta_field_is_detected(run, field, value):
    meta = json.loads((run / "run_meta.json").read_text())
    meta[field] = value
    (run / "run_meta.json").write_text(json.dumps(meta, indent=2))
    report = verify_run(run, inputs=False)
    assert any(
        "run_meta:canonical changed" in p.message and p.file == str(run / "run_meta.json") for p in report.problems
    ), names(report)


def test_hashes_json_with_another_algorithm_is_detected(run):
    doc = json.loads((run / "hashes.json").read_text())
    doc["algorithm"] = "md5"
    (run / "hashes.json").write_text(json.dumps(doc))
    assert "hashes.json is not a valid hash chain" in names(verify_run(run, inputs=False))


def test_a_changed_dataset_file_is_detected(real, run, tmp_path):
    datasets = tmp_path / "datasets"
    shutil.copytree(real["datasets"], datasets)
    train = datasets / "ds_demo" / "v1" / "train.jsonl"
    train.write_text(train.read_text().replace("negative", "positive", 1))
    report = verify_run(run, datasets)
    assert not report.ok
    assert any(
        p.file == str(train) and "dataset:ds_demo@v1/train.jsonl changed" in p.message for p in report.problems
    ), names(report)


def test_inputs_not_at_hand_are_noted_not_failed(run, monkeypatch):
    cfg = (run / "config.yaml").read_text()
    # A copy of the run whose recorded dataset folder is gone: the chain itself still holds.
    meta = json.loads((run / "run_meta.json").read_text())
    report = verify_run(run, run / "nowhere")
    assert report.ok, names(report)
    assert cfg and meta["dataset"]["ref"] == "ds_demo@v1"


def test_not_a_run_folder(tmp_path):
    with pytest.raises(VerifilyError, match="not a run folder"):
        verify_run(tmp_path)
    with pytest.raises(VerifilyError, match="not a folder"):
        verify_run(tmp_path / "missing")


def test_cli_exit_codes_and_messages(cli, real, run, tmp_path):
    ok = cli("reproduce", "--verify-only", str(real["v1"]), "--datasets-root", str(real["datasets"]))
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    f = run / "adapter/adapter_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    (run / "extra.txt").write_text("x")
    bad = cli("reproduce", "--verify-only", str(run), "--json")
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False
    assert sorted(Path(p["file"]).name for p in doc["problems"]) == ["adapter_model.safetensors", "extra.txt"]
    assert "adapter/adapter_model.safetensors changed" in bad.stderr
    notrun = cli("reproduce", "--verify-only", str(tmp_path / "nothing-here"))
    assert notrun.returncode == 2 and "not a folder" in notrun.stderr


def test_a_changed_or_missing_base_model_file_is_detected(real, tmp_path):
    """The base model's files are in the chain (`model:<file>`). The real run's model folder is an installed
    package we must not edit, so its files are checked from a copy, through the check verify_run makes."""
    from verifily_action.runs import chain
    from verifily_action.runs.verify import VerifyReport, _check_model

    meta = json.loads((real["v1"] / "run_meta.json").read_text())
    entries = chain.read_entries(real["v1"])
    recorded = sorted(k[len("model:") :] for k in entries if k.startswith("model:") and k != "model:revision")
    assert "config.json" in recorded, recorded
    folder = tmp_path / "model"
    shutil.copytree(meta["model_path"], folder)
    meta = {**meta, "model_path": str(folder)}
    intact = VerifyReport(tmp_path)
    _check_model(meta, entries, intact)
    assert intact.problems == [] and intact.checked == len(recorded)
    cfg = folder / "config.json"
    cfg.write_bytes(cfg.read_bytes().replace(b"}", b" }", 1))
    (folder / recorded[-1]).unlink()
    report = VerifyReport(tmp_path)
    _check_model(meta, entries, report)
    found = sorted(p.message.split(":")[1].split(" ")[0] for p in report.problems)
    assert found == sorted({"config.json", recorded[-1]}), names(report)
    assert any("model:config.json changed" in p.message and p.file == str(cfg) for p in report.problems)
    assert any("the base model file is missing" in p.message for p in report.problems)


@pytest.mark.parametrize("rel", FILES)
def test_a_symlink_in_place_of_any_file_is_refused_by_verify_and_the_cache(run, rel, tmp_path):
    """The link leads to an identical copy outside the run, so every hash still matches: only the rule catches it."""
    from verifily_action.runs.cache import find_cached

    copy = tmp_path / "elsewhere" / rel
    copy.parent.mkdir(parents=True)
    shutil.copyfile(run / rel, copy)
    (run / rel).unlink()
    (run / rel).symlink_to(copy)
    report = verify_run(run, inputs=False)
    assert [p.file for p in report.problems] == [str(run / rel)], names(report)
    assert "symbolic link" in report.problems[0].message
    key = json.loads(copy.read_text() if rel == "run_meta.json" else (run / "run_meta.json").read_text())["run_key"]
    assert find_cached(run.parent, key) is None


@pytest.mark.parametrize(("drop", "named"), [("dataset:", "'dataset:ds_demo@v1'"), ("model:", "model:<file>")])
def test_a_resealed_chain_without_its_dataset_or_model_is_refused(real, run, drop, named):
    from verifily_action.runs import chain

    chain.seal(run, {k: v for k, v in chain.read_entries(run).items() if not k.startswith(drop)})
    report = verify_run(run, real["datasets"])
    assert any(named in p.message and p.file == str(run / "hashes.json") for p in report.problems), names(report)


def test_an_entry_leading_out_of_the_run_is_refused(real, run):
    from verifily_action.runs import chain

    entries = chain.read_entries(run)
    entries["../demo_v2/adapter/adapter_model.safetensors"] = entries["adapter/adapter_model.safetensors"]
    chain.seal(run, entries)
    report = verify_run(run, real["datasets"])
    assert [p.json_path for p in report.problems] == ['$.entries["../demo_v2/adapter/adapter_model.safetensors"]']


def test_a_run_trained_and_evaluated_with_a_key_is_signed_at_every_seal(real, tmp_path, monkeypatch, cli):
    """The real train and eval with VERIFILY_SIGNING_KEY set: each seal signs its own root, and the run verifies
    against the key's public half."""
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    from verifily_action.runs.signature import generate
    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    private, public, kid = generate(tmp_path / "keys")
    monkeypatch.setenv("VERIFILY_SIGNING_KEY", str(private))
    res = train(TrainOptions(config=real["config_v1"], output_dir=str(tmp_path / "runs")), echo=lambda s: None)
    assert not res.cached
    trained = json.loads((res.run_dir / "signature.json").read_text())
    assert trained["root_hash"] == res.meta["root_hash"] and trained["key_id"] == kid
    evaluate_run(res.run_dir, EvalOptions(dataset="ds_demo@v1", datasets_root=str(real["datasets"])))
    root = json.loads((res.run_dir / "run_meta.json").read_text())["root_hash"]
    assert root != trained["root_hash"]
    assert json.loads((res.run_dir / "signature.json").read_text())["root_hash"] == root
    monkeypatch.delenv("VERIFILY_SIGNING_KEY")
    args = ("reproduce", "--verify-only", str(res.run_dir), "--datasets-root", str(real["datasets"]))
    out = cli(*args, "--trusted-key", str(public))
    assert out.returncode == 0, out.stderr
    assert f"root {root[:16]}, signed by key {kid[:16]} (trusted)" in out.stdout
