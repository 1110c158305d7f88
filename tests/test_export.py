"""`verifily export` (verifily_action/export/) on tiny random-init runs: a merged export computes what the base model
with the adapter applied (unmerged, loaded here with PEFT directly) computes, for sft, classification (labels in the
config) and seq2seq; --adapter-only copies the run's files byte for byte; a tampered, failed or missing run, a used
OUT and a wrong pair of flags are each one clear error (exit 2) that writes nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.builders import GENERATED, cls_rows, sft_rows, write_config, write_dataset
from tests.tiny_models import CHAT_TEMPLATE, make_tiny_llama, make_tiny_t5
from verifily_action.runs.layout import ADAPTER, ADAPTER_WEIGHTS, HASHES, RUN_META, TOKENIZER

pytestmark = pytest.mark.integration

TEXTS = ["Question: what is 2 plus 3?", "The movie was great.", "Worst purchase ever; it broke."]
TASKS = ("sft", "classification", "seq2seq")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run per task (sft on a llama whose tokenizer has a chat template), trained on first use."""
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    root = tmp_path_factory.mktemp("export")
    made: dict[str, object] = {}

    def get(task: str):
        if task not in made:
            d = root / task
            if task == "seq2seq":
                model = make_tiny_t5(d / "t5")
            else:
                model = make_tiny_llama(d / "llama", chat_template=CHAT_TEMPLATE if task == "sft" else None)
            rows = cls_rows if task == "classification" else sft_rows
            write_dataset(d / "datasets", "d", "v1", {"train": rows(24), "eval": rows(8, 1)}, task=task, **GENERATED)
            cfg = write_config(
                d / "train.yaml", task=task, model=str(model), dataset="d@v1", datasets_root=str(d / "datasets"),
                output_dir=str(d / "runs"), training={"max_steps": 6, "batch_size": 8, "max_length": 64,
                                                      "learning_rate": 0.01},
            )  # fmt: skip
            made[task] = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
        return made[task]

    return get


def _meta(run):
    return json.loads((run / RUN_META).read_text())


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _unmerged(task, run):
    """The run's base model with its adapter applied through PEFT (not merged), and the run's tokenizer."""
    from peft import PeftModel
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    meta = _meta(run)
    tok = AutoTokenizer.from_pretrained(run / TOKENIZER)
    if task == "classification":
        labels = json.loads((run / ADAPTER / "label_map.json").read_text())["label2id"]
        base = AutoModelForSequenceClassification.from_pretrained(
            meta["model_path"], num_labels=len(labels), label2id=labels, id2label={i: k for k, i in labels.items()}
        )
    else:
        auto = AutoModelForSeq2SeqLM if task == "seq2seq" else AutoModelForCausalLM
        base = auto.from_pretrained(meta["model_path"])
    base.config.pad_token_id = tok.pad_token_id
    return PeftModel.from_pretrained(base, str(run / ADAPTER)).eval(), tok


def _logits(model, tok, task):
    import torch

    batch = tok(TEXTS, return_tensors="pt", padding=True)
    if task == "seq2seq":
        batch["decoder_input_ids"] = tok(["Answer: 5."] * len(TEXTS), return_tensors="pt").input_ids
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("task", TASKS)
def test_a_merged_export_computes_what_the_adapter_does(cli, runs, tmp_path, task):
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    run = runs(task)
    sealed = _files(run)
    out = tmp_path / "deep" / "merged"
    res = cli("export", "--run", str(run), "--merged", str(out))
    assert res.returncode == 0, res.stderr
    meta = _meta(run)
    assert f"exported run {meta['id']} (root {meta['root_hash'][:16]})" in res.stdout and str(out) in res.stdout

    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    auto = {"sft": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}.get(task, AutoModelForSequenceClassification)
    merged = auto.from_pretrained(out).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())  # plain weights, no PEFT wrapper left
    tok = AutoTokenizer.from_pretrained(out)
    want_model, run_tok = _unmerged(task, run)
    assert tok(TEXTS).input_ids == run_tok(TEXTS).input_ids
    got, want = _logits(merged, tok, task), _logits(want_model, run_tok, task)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    with want_model.disable_adapter():  # the base model alone computes something else: the adapter is in there
        assert (_logits(want_model, run_tok, task) - got).abs().max() > 1e-4
    if task == "classification":
        labels = json.loads((run / ADAPTER / "label_map.json").read_text())["label2id"]
        assert merged.config.label2id == labels and sorted(labels) == ["negative", "positive"]
        assert merged.config.id2label == {i: k for k, i in labels.items()}
        assert [merged.config.id2label[int(i)] for i in got.argmax(-1)] == [
            want_model.config.id2label[int(i)] for i in want.argmax(-1)
        ]
    if task == "sft":
        assert tok.chat_template == CHAT_TEMPLATE  # the run's tokenizer, chat template included

    card = (out / "README.md").read_text()
    for value in (meta["run_key"], meta["root_hash"], meta["model"], meta["dataset"]["ref"], f"Task: `{task}`"):
        assert value in card, value
    assert _files(run) == sealed  # the run is untouched
    assert [p.name for p in out.parent.iterdir()] == ["merged"]  # no scratch folder left beside OUT


def test_adapter_only_copies_the_adapter_and_tokenizer_byte_for_byte(cli, runs, tmp_path):
    run = runs("classification")
    out = tmp_path / "adapter-out"
    out.mkdir()  # an empty folder is taken
    res = cli("export", "--run", str(run), "--adapter-only", str(out))
    assert res.returncode == 0, res.stderr
    want = {**_files(run / ADAPTER), **_files(run / TOKENIZER)}
    assert {"README.md", "label_map.json", "adapter_config.json", "adapter_model.safetensors"} <= set(want)
    assert _files(out) == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter-out"]


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "runs" / run.name)


def _refused(res, out, *says):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    for s in says:
        assert s in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout and "internal error" not in res.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


@pytest.mark.parametrize("flag", ["--merged", "--adapter-only"])
def test_a_tampered_run_is_refused(cli, runs, tmp_path, flag):
    run = _copy(runs("sft"), tmp_path)
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0  # the copy itself is intact
    weights = run / ADAPTER_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    res = cli("export", "--run", str(run), flag, str(out))
    _refused(res, out, "fails its hash check", ADAPTER_WEIGHTS, "reproduce --verify-only")


@pytest.mark.parametrize("status", ["failed", "interrupted", "running"])
def test_a_run_that_did_not_complete_is_refused(cli, runs, tmp_path, status):
    run = _copy(runs("sft"), tmp_path)
    meta = _meta(run)
    meta["status"] = status
    (run / RUN_META).write_text(json.dumps(meta))
    out = tmp_path / "out"
    res = cli("export", "--run", str(run), "--merged", str(out))
    _refused(res, out, f"its status is '{status}', not completed", "hint:")


def test_a_missing_run_is_refused(cli, tmp_path):
    out = tmp_path / "out"
    _refused(cli("export", "--run", str(tmp_path / "nope"), "--merged", str(out)), out, "no run folder at", "hint:")
    (tmp_path / "empty").mkdir()
    _refused(cli("export", "--run", str(tmp_path / "empty"), "--merged", str(out)), out, "is not a run folder")


def test_a_used_output_folder_is_refused_and_left_as_it_was(cli, runs, tmp_path):
    run = runs("sft")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = cli("export", "--run", str(run), "--merged", str(out))
    assert res.returncode == 2 and "exists and is not empty" in res.stderr and "remove" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert _files(out) == {"keep.txt": b"mine"} and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    inside = run / "exported"
    res = cli("export", "--run", str(run), "--adapter-only", str(inside))
    assert res.returncode == 2 and "inside the run folder" in res.stderr and not inside.exists(), res.stderr


@pytest.mark.parametrize("flags", [[], ["--merged", "a", "--adapter-only", "b"]])
def test_exactly_one_of_the_two_flags(cli, runs, tmp_path, flags):
    res = cli("export", "--run", str(runs("sft")), *[f if f.startswith("-") else str(tmp_path / f) for f in flags])
    assert res.returncode == 2 and "give exactly one of --merged OUT and --adapter-only OUT" in res.stderr
    assert ("not both" in res.stderr) == bool(flags) and "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failure_midway_leaves_nothing(cli, runs, tmp_path, monkeypatch):
    from verifily_action.export import bundle

    def broken(*args, **kwargs):
        raise OSError("simulated failure after the weights were written")

    monkeypatch.setattr(bundle, "merged_card", broken)
    run = runs("sft")
    hashes = (run / HASHES).read_bytes()
    out = tmp_path / "new" / "out"
    res = cli("export", "--run", str(run), "--merged", str(out))
    assert res.returncode == 3 and "simulated failure" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []  # no OUT, no scratch folder, not even the parent it made
    assert (run / HASHES).read_bytes() == hashes


def test_every_task_has_the_auto_class_its_card_names():
    """The merged card tells users which Auto class loads the model: every task the config schema allows has one."""
    from verifily_action.export.bundle import AUTO_CLASS
    from verifily_action.schemas import load_schema

    tasks = load_schema("train.schema.json")["properties"]["task"]["enum"]
    assert sorted(AUTO_CLASS) == sorted(tasks)
