"""End-to-end training on CPU with tiny random-init models: all three tasks, the run folder, cache, determinism,
report_to, and failures (disk full, bad models, QLoRA without CUDA)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from tests.builders import GENERATED, cls_rows, sft_rows, write_config, write_dataset
from tests.tiny_models import make_tiny_llama, make_tiny_t5
from verifily_action.errors import VerifilyError
from verifily_action.runs import chain, files, folder
from verifily_action.runs.verify import verify_run
from verifily_action.schemas import validator
from verifily_action.train import job
from verifily_action.train.plan import TrainOptions

pytestmark = pytest.mark.integration

TRAINING = {"max_steps": 6, "batch_size": 8, "max_length": 64, "logging_steps": 1, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("assets")
    root = d / "datasets"
    write_dataset(root, "sft", "v1", {"train": sft_rows(48), "eval": sft_rows(16, 1)}, task="sft", **GENERATED)
    write_dataset(root, "s2s", "v1", {"train": sft_rows(48), "eval": sft_rows(16, 1)}, task="seq2seq", **GENERATED)
    ev = cls_rows(16, 1) + [{"id": "n1", "text": "meh", "label": "neutral", "tags": {"source": "human"}}]
    write_dataset(root, "cls", "v1", {"train": cls_rows(48), "eval": ev}, **GENERATED)
    return {
        "root": root,
        "llama": make_tiny_llama(d / "llama"),
        "llama_nopad": make_tiny_llama(d / "llama_nopad", pad_token=False),
        "t5": make_tiny_t5(d / "t5"),
    }


def tiny_config(tmp_path: Path, assets, task: str, model: str, dataset: str, **extra) -> Path:
    """tmp_path/train.yaml: `task` on one of the tiny models and datasets (`training` merged into TRAINING)."""
    return write_config(
        tmp_path / "train.yaml",
        sort_keys=True,
        task=task,
        model=str(assets[model]),
        dataset=dataset,
        datasets_root=str(assets["root"]),
        output_dir=str(tmp_path / "runs"),
        training={**TRAINING, **extra.pop("training", {})},
        **extra,
    )


def losses(run_dir: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def check_run_folder(run_dir: Path) -> dict:
    assert not run_dir.name.endswith(".partial")
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {"run_meta.json", "config.yaml", "hashes.json", "environment.json", "train_log.jsonl"} <= names
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/README.md"} <= names
    assert any(n.startswith("tokenizer/") for n in names)
    assert not any(n.startswith("checkpoints/") for n in names)
    meta = json.loads((run_dir / "run_meta.json").read_text())
    errors = [e.message for e in validator("run_meta.schema.json").iter_errors(meta)]
    assert errors == []
    assert validator("hashes.schema.json").is_valid(json.loads((run_dir / "hashes.json").read_text()))
    assert meta["status"] == "completed" and meta["root_hash"] and meta["error"] is None
    assert chain.verify_chain(run_dir) == []
    report = verify_run(run_dir, inputs=False)  # also: no file outside the chain (trackers' logs/ included)
    assert report.ok, [p.message for p in report.problems]
    entries = chain.read_entries(run_dir)
    for key in ("config:canonical", "environment.json", "train_log.jsonl", "adapter/adapter_model.safetensors"):
        assert key in entries
    assert any(k.startswith("model:") for k in entries) and any(k.endswith("/manifest") for k in entries)
    assert meta["metrics"]["global_step"] == TRAINING["max_steps"]
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, TRAINING["max_steps"] + 1))
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(log[0])
    card = (run_dir / "adapter" / "README.md").read_text()
    assert meta["dataset"]["ref"] in card and meta["dataset"]["hash"] in card and "train_loss" in card
    return meta


def test_sft_cli_end_to_end_then_cached(tmp_path, assets, cli):
    cfg = tiny_config(tmp_path, assets, "sft", "llama", "sft@v1")
    dry = cli("train", "--config", str(cfg), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "task: sft" in dry.stdout and "48 rows" in dry.stdout and "steps: 6" in dry.stdout
    assert str(assets["llama"]) in dry.stdout
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    meta = check_run_folder(run_dir)
    assert meta["task"] == "sft" and meta["truncation"]["train"]["rows"] == 48
    assert "step 6/6" in r.stderr  # plain progress lines when not a TTY
    again = cli("train", "--config", str(cfg))
    assert again.returncode == 0 and "cached" in again.stderr
    assert Path(again.stdout.strip().splitlines()[-1]) == run_dir

    # the adapter loads with plain PEFT and changes the base model's output
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    base = AutoModelForCausalLM.from_pretrained(assets["llama"])
    ids = tok("Question: what is 1 plus 2?", return_tensors="pt")
    before = base(**ids).logits
    model = PeftModel.from_pretrained(base, run_dir / "adapter")
    assert not torch.allclose(model(**ids).logits, before)


def test_seq2seq_and_force_retrains_identically(tmp_path, assets):
    cfg = tiny_config(tmp_path, assets, "seq2seq", "t5", "s2s@v1")
    first = job.train(TrainOptions(config=cfg), echo=lambda s: None)
    check_run_folder(first.run_dir)
    said: list[str] = []
    cached = job.train(TrainOptions(config=cfg), echo=said.append)
    assert cached.cached and cached.run_dir == first.run_dir and any("cached" in s for s in said)
    forced = job.train(TrainOptions(config=cfg, force=True), echo=lambda s: None)
    assert not forced.cached and forced.run_dir == first.run_dir
    # determinism: a second run with the same seed logs exactly the same losses
    assert losses(forced.run_dir) == losses(first.run_dir) and len(losses(first.run_dir)) == 6

    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(assets["t5"]), forced.run_dir / "adapter")


def test_classification_decoder_without_pad_token(tmp_path, assets):
    cfg = tiny_config(tmp_path, assets, "classification", "llama_nopad", "cls@v1", report_to="tensorboard")
    said: list[str] = []
    res = job.train(TrainOptions(config=cfg), echo=said.append)
    meta = check_run_folder(res.run_dir)
    assert meta["label_map"] == {"negative": 0, "positive": 1}
    assert json.loads((res.run_dir / "adapter" / "label_map.json").read_text())["label2id"] == meta["label_map"]
    assert meta["unseen_eval_labels"] == {"neutral": 1}
    assert any("no pad token" in n for n in meta["notes"]) and any("no pad token" in s for s in said)
    assert any("neutral" in s for s in said)
    assert meta["data_report"]  # check_data's report is recorded
    assert list((res.run_dir / "logs" / "tensorboard").rglob("events.out.tfevents*"))  # report_to passthrough
    adapter_cfg = json.loads((res.run_dir / "adapter" / "adapter_config.json").read_text())
    assert "score" in adapter_cfg["modules_to_save"]  # the new head is saved with the adapter

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(assets["llama_nopad"], num_labels=2)
    base.config.pad_token_id = 2
    PeftModel.from_pretrained(base, res.run_dir / "adapter")


def test_disk_full_while_saving_marks_failed(tmp_path, assets, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(job, "save_outputs", full)
    cfg = tiny_config(tmp_path, assets, "sft", "llama", "sft@v1", run_name="full")
    partial = tmp_path / "runs" / "full.partial"
    with pytest.raises(VerifilyError, match=f"disk full: cannot write {partial}: No space left") as exc:
        job.train(TrainOptions(config=cfg), echo=lambda s: None)
    assert exc.value.exit_code == 2 and "is marked failed" in (exc.value.hint or "")
    assert not (tmp_path / "runs" / "full").exists()  # nothing that looks complete
    meta = json.loads((tmp_path / "runs" / "full.partial" / "run_meta.json").read_text())
    assert meta["status"] == "failed" and "No space left" in meta["error"] and meta["root_hash"] is None
    with pytest.raises(VerifilyError, match="not completed"):
        folder.load_run(tmp_path / "runs" / "full.partial", require_completed=True)
    # a second attempt does not silently reuse or clobber the failed folder
    with pytest.raises(VerifilyError, match="unfinished run"):
        job.train(TrainOptions(config=cfg), echo=lambda s: None)


def test_disk_full_when_sealing_is_exit_2_and_marks_the_run_failed(tmp_path, assets, monkeypatch, cli):
    """The disk fills up as the run is sealed and stays full: a write succeeds only in space freed since (a real
    full disk). The run is still marked failed, and the CLI says what it could not write (exit 2, not 3)."""
    disk: dict[Path, int] = {}  # every file of the run, with its size, when the disk filled up

    def freed() -> int:
        return sum(n for p, n in disk.items() if not p.exists())

    write = files.write_text_atomic

    def fake_write(path, text):
        if disk and len(text.encode()) > freed():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, text)

    def finish(run_dir, plan):  # sealing writes hashes.json first
        disk.update({p: p.stat().st_size for p in run_dir.rglob("*") if p.is_file()})
        fake_write(run_dir / "hashes.json", "{}")

    monkeypatch.setattr(files, "write_text_atomic", fake_write)
    monkeypatch.setattr(job, "finish", finish)
    cfg = tiny_config(tmp_path, assets, "sft", "llama", "sft@v1", run_name="full")
    r = cli("train", "--config", str(cfg))
    partial = tmp_path / "runs" / "full.partial"
    assert r.returncode == 2, r.stderr
    assert f"error: disk full: cannot write {partial / 'hashes.json'}: No space left on device" in r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr and "is marked failed" in r.stderr
    meta = json.loads((partial / "run_meta.json").read_text())
    assert meta["status"] == "failed" and meta["error"].startswith("disk full: cannot write")


def test_disk_full_before_training_starts_leaves_nothing(tmp_path, assets, monkeypatch, cli):
    write = job.write_text_atomic

    def full_at_config(path, text):
        if Path(path).name == "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, text)

    monkeypatch.setattr(job, "write_text_atomic", full_at_config)
    cfg = tiny_config(tmp_path, assets, "sft", "llama", "sft@v1", run_name="full")
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert f"disk full: cannot write {tmp_path / 'runs' / 'full.partial' / 'config.yaml'}" in r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    assert list((tmp_path / "runs").iterdir()) == []  # no run that never started, no lock file


def test_disk_full_in_a_checkpoint_is_told_as_such(tmp_path, assets, monkeypatch, cli):
    """torch.save on a full disk raises a RuntimeError from its zip writer, with no OS error in it."""
    import torch

    def full(*a, **kw):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(files, "free_bytes", lambda path: 12288)
    cfg = tiny_config(tmp_path, assets, "sft", "llama", "sft@v1", run_name="full", training={"checkpoint_steps": 2})
    r = cli("train", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    partial = tmp_path / "runs" / "full.partial"
    assert f"disk full: cannot write {partial}: No space left on device (12.0 KiB free there)" in r.stderr
    assert "internal error" not in r.stderr
    assert json.loads((partial / "run_meta.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("/nonexistent/model", {}, "does not exist"),
        ("some-org/not-cached-model", {}, "offline; give a local path"),
        ("DATASETS", {}, "not a Hugging Face model folder"),
        ("LLAMA", {"quantization": "4bit"}, "needs a CUDA GPU"),
    ],
)
def test_bad_models_fail_before_training(tmp_path, assets, cli, model, extra, message):
    import torch

    if "quantization" in extra and torch.cuda.is_available():
        pytest.skip("checks the no-CUDA error")
    model = {"DATASETS": str(assets["root"]), "LLAMA": str(assets["llama"])}.get(model, model)
    cfg = {"task": "sft", "model": model, "dataset": "sft@v1", "datasets_root": str(assets["root"]), **extra}
    path = write_config(tmp_path / "train.yaml", sort_keys=True, **cfg)
    r = cli("train", "--config", str(path), "--output-dir", str(tmp_path / "runs"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started
