"""`verifily eval` on a decoder-only classifier: a tiny random Llama with no pad token (pad = eos, as training sets
it) trained by `verifily train` for a few steps, then evaluated: predictions and metrics, batched equals
one-at-a-time, `--split`, and truncation at eval counted, recorded and noted on stderr.

The run is trained once per module (a few seconds on CPU); every test only evaluates it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders import GENERATED, cls_rows, write_config, write_dataset
from tests.tiny_models import CORPUS, make_tiny_llama
from verifily_action.schemas import validator

pytestmark = pytest.mark.integration

MAX_LENGTH = 16  # the run's training.max_length, which eval applies too


def _long_rows(n: int) -> list[dict]:
    """Eval rows of which every other one is several sentences long (far past MAX_LENGTH tokens)."""
    rows = cls_rows(n, 2)
    for i, r in enumerate(rows):
        r["id"] = f"long{i}"
        if i % 2:
            r["text"] = " ".join([r["text"], *CORPUS[:3]])
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    pytest.importorskip("verifily_action.train")
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    d = tmp_path_factory.mktemp("eval_decoder")
    data = d / "datasets"
    write_dataset(data, "cls", "v1", {"train": cls_rows(48), "eval": cls_rows(20, 1)}, **GENERATED)
    write_dataset(data, "cls", "v2", {"eval": _long_rows(12)}, **GENERATED)
    cfg = {
        "task": "classification",
        "model": str(make_tiny_llama(d / "llama", pad_token=False)),
        "dataset": "cls@v1",
        "datasets_root": str(data),
        "output_dir": str(d / "runs"),
        "training": {"max_steps": 4, "batch_size": 8, "max_length": MAX_LENGTH, "learning_rate": 0.01},
        "eval": {"slice_by": ["source"], "min_slice_size": 5, "batch_size": 8},
    }
    path = write_config(d / "train.yaml", sort_keys=True, **cfg)
    res = job.train(TrainOptions(config=path), echo=lambda s: None)
    meta = json.loads((res.run_dir / "run_meta.json").read_text())
    assert meta["truncation"]["train"]["truncated"] == 0  # training rows fit: eval's truncation is eval's own
    return res.run_dir


def _cli_eval(capsys, run: Path, *args: str) -> tuple[dict, str]:
    """The real entry point, in process (a subprocess would spend ~20 s importing torch on a shared machine)."""
    from verifily_action.cli import main

    rc = main(["eval", "--run", str(run), "--datasets-root", str(run.parent.parent / "datasets"), "--json", *args])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    return json.loads(out), err


def _preds(run: Path, eval_name: str) -> list[dict]:
    lines = (run / "eval" / eval_name / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines]


def test_decoder_classification_eval_batched_equals_single(run):
    from verifily_action.evaluate import inference
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run

    r = evaluate_run(run, EvalOptions()).results
    assert sorted(validator("eval_results.schema.json").iter_errors(r), key=str) == []
    assert r["task"] == "classification" and r["eval_name"] == "cls@v1-eval" and r["n"] == 20
    assert r["metrics"] == ["accuracy", "macro_f1"]
    for m in r["metrics"]:
        iv = r["overall"][m]
        assert 0.0 <= iv["ci_low"] <= iv["value"] <= iv["ci_high"] <= 1.0
    assert r["confusion_matrix"]["labels"] == ["negative", "positive"]
    assert r["truncation"]["truncated"] == 0
    preds = _preds(run, "cls@v1-eval")
    assert len(preds) == 20 and {p["prediction"] for p in preds} <= {"negative", "positive"}
    assert all(p["loss"] is not None and p["loss"] > 0 for p in preds)

    # The batched run (batch 8, rows of different lengths padded with eos) agrees with one row at a time.
    rows = {x["id"]: x for x in cls_rows(20, 1)}
    texts = [rows[p["id"]]["text"] for p in preds]
    refs = [rows[p["id"]]["label"] for p in preds]
    assert len({len(t) for t in texts}) > 1  # padding is exercised
    lm = inference.load_for_eval(
        "classification", str(run.parent.parent / "llama"), run / "adapter", run / "tokenizer", max_length=MAX_LENGTH
    )
    assert lm.tokenizer.pad_token == lm.tokenizer.eos_token and lm.model.config.pad_token_id is not None
    single = inference.classify(lm, texts, refs, batch_size=1)
    assert single.predictions == [p["prediction"] for p in preds]
    assert single.losses == pytest.approx([p["loss"] for p in preds], rel=1e-4, abs=1e-5)


def test_eval_split_option(run, capsys):
    r, _ = _cli_eval(capsys, run, "--split", "train")
    assert r["eval_name"] == "cls@v1-train" and r["dataset"]["split"] == "train" and r["n"] == 48
    assert len(_preds(run, "cls@v1-train")) == 48
    entries = json.loads((run / "hashes.json").read_text())["entries"]
    assert "eval/cls@v1-train/eval_results.json" in entries


def test_eval_truncation_is_counted_recorded_and_noted(run, capsys):
    from transformers import AutoTokenizer

    rows = _long_rows(12)
    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    lengths = [len(x) for x in tok([r["text"] for r in rows])["input_ids"]]
    long = sum(n > MAX_LENGTH for n in lengths)
    assert 0 < long < len(rows)

    r, stderr = _cli_eval(capsys, run, "--dataset", "cls@v2")
    assert sorted(validator("eval_results.schema.json").iter_errors(r), key=str) == []
    assert r["truncation"] == {
        "max_length": MAX_LENGTH,
        "truncated": long,
        "inputs": long,
        "references": 0,
        "longest": max(lengths),
    }
    note = (
        f"note: {long} of 12 rows are longer than max_length {MAX_LENGTH} tokens and were truncated "
        f"(longest: {max(lengths)})"
    )
    assert note in stderr.splitlines()
    saved = json.loads((run / "eval" / "cls@v2-eval" / "eval_results.json").read_text())
    assert saved["truncation"] == r["truncation"]
    assert len(_preds(run, "cls@v2-eval")) == 12
