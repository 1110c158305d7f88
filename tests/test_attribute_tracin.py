"""`verifily attribute --method tracin` (attribute/tracin.py, attribute/gradients.py) on tiny random-init models:
per-example gradients against one plain backward of Hugging Face's own loss per row (sft, seq2seq,
classification), the projected dot products against the exact ones (exactly equal through the identity
projection), and end to end through the CLI on a tiny sft run with an eval row planted in the train split, and on
tiny classification and seq2seq runs."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from tests.builders import GENERATED, cls_rows, sft_rows, tiny_sft_config, write_config, write_dataset
from tests.tiny_models import make_tiny_llama, make_tiny_t5
from verifily_action.attribute import gradients as G
from verifily_action.runs.layout import ATTRIBUTION, ATTRIBUTION_FILES, attribution_dir

pytestmark = pytest.mark.integration

PLANTED = {"prompt": "Summarize: the cat sat on the mat all day long.", "response": "The cat sat on the mat."}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracin-models")
    return {"llama": make_tiny_llama(d / "llama"), "t5": make_tiny_t5(d / "t5")}


def _adapted(models, task):
    """(LoRA-wrapped tiny model in eval mode, tokenizer, encoded rows) with nonzero B matrices (PEFT starts them at
    0, which would make every A gradient 0)."""
    import datasets
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from verifily_action.train import data
    from verifily_action.train.lora import apply_lora

    path = models["t5" if task == "seq2seq" else "llama"]
    tok = AutoTokenizer.from_pretrained(path)
    rows, label_map = datasets.Dataset.from_list(sft_rows(6)), None
    if task == "classification":
        rows, label_map = datasets.Dataset.from_list(cls_rows(6)), {"negative": 0, "positive": 1}
        base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    else:
        base = (AutoModelForSeq2SeqLM if task == "seq2seq" else AutoModelForCausalLM).from_pretrained(path)
    base.config.pad_token_id = tok.pad_token_id
    lora = SimpleNamespace(r=4, alpha=8, dropout=0.0, target_modules="auto")
    model = apply_lora(base, task, lora, quantized=False, gradient_checkpointing=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.eval()
    enc = data.encode(task, rows, tok, 64, label_map).columns
    encoded = [{"input_ids": enc["input_ids"][i], "labels": enc["labels"][i]} for i in range(len(rows))]
    return model, tok, encoded


@pytest.mark.parametrize("task", ["sft", "seq2seq", "classification"])
def test_per_example_gradients_equal_one_backward_per_row(models, task):
    import torch

    model, tok, encoded = _adapted(models, task)
    params = G.trainable(model)
    assert set(params) == {n for n, p in model.named_parameters() if p.requires_grad}  # what training trains
    if task == "classification":
        assert any("modules_to_save" in n for n in params)  # the head trained in full is in
    batch = G.pad_batch(task, encoded, tok.pad_token_id)
    got = G.per_example_grads(model, task, batch, params)
    for i, row in enumerate(encoded):
        model.zero_grad()
        one = {"input_ids": torch.tensor([row["input_ids"]]), "labels": torch.tensor([row["labels"]])}
        model(**one).loss.backward()  # Hugging Face's own training loss of the row alone
        for n, p in params.items():
            want = p.grad if p.grad is not None else torch.zeros_like(p)
            scale = float(want.abs().max()) + 1e-12
            assert float((got[n][i] - want).abs().max()) <= 1e-4 * scale + 1e-7, (n, i)
    assert any(float(got[n].abs().max()) > 0 for n in params if "lora_A" in n)
    assert float((got[next(iter(params))][0] - got[next(iter(params))][1]).abs().max()) > 0  # rows differ


@pytest.mark.parametrize("kind", ["sketch", "gaussian"])
def test_projected_dot_products_match_the_exact_ones(models, kind):
    import torch

    model, tok, encoded = _adapted(models, "sft")
    params = G.trainable(model)
    sizes = {n: p.numel() for n, p in params.items()}
    grads = G.per_example_grads(model, "sft", G.pad_batch("sft", encoded, tok.pad_token_id), params)
    flat = torch.cat([grads[n].reshape(len(encoded), -1) for n in sizes], dim=1).double()
    exact = (flat @ flat.T).numpy()
    identity = G.Projector(sizes, sum(sizes.values()), kind="identity")(grads).double()
    assert np.array_equal((identity @ identity.T).numpy(), exact)

    dim = 2048
    p = G.Projector(sizes, dim, seed=3, kind=kind)(grads).double().numpy()
    norms = np.sqrt(np.diag(exact))
    err = np.abs(p @ p.T - exact) / np.outer(norms, norms)
    assert err.max() < 6 * np.sqrt(2 / dim), err.max()  # each entry's error has sd <= sqrt(2/dim)
    # unbiased: averaged over 16 seeds at dim 64 the error shrinks to about that of one projection at dim 1024
    mean = np.mean([(q @ q.T) for q in (G.Projector(sizes, 64, s, kind)(grads).double().numpy() for s in range(16))], 0)
    assert (np.abs(mean - exact) / np.outer(norms, norms)).max() < 6 * np.sqrt(2 / 1024)
    # the same rows projected alone, in another batch, or with the matrix drawn again (no cache) give the same numbers
    alone = G.Projector(sizes, dim, seed=3, kind=kind, cache_bytes=0)({n: g[2:3] for n, g in grads.items()})
    assert np.allclose(alone[0].double().numpy(), p[2], rtol=1e-5, atol=1e-7)
    assert not np.allclose(G.Projector(sizes, dim, seed=4, kind=kind)(grads).numpy(), p)  # the seed matters


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, models):
    """A tiny sft run whose train split holds a copy of one eval row (tag source=planted on both)."""
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    d = tmp_path_factory.mktemp("tracin-run")
    train = sft_rows(40) + [{"id": "planted", **PLANTED, "tags": {"source": "planted"}}]
    ev = sft_rows(12, 1) + [{"id": "e-planted", **PLANTED, "tags": {"source": "planted"}}]
    write_dataset(d / "datasets", "sft", "v1", {"train": train, "eval": ev}, task="sft", **GENERATED)
    training = {"max_steps": 6, "batch_size": 8, "learning_rate": 0.01}
    cfg = tiny_sft_config(d, {"model": models["llama"], "root": d / "datasets"}, training)
    return job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir


def test_tracin_through_the_cli_finds_the_planted_row(cli, planted_run):
    run = planted_run
    out = cli("attribute", "--run", str(run), "--method", "tracin", "--slice-by", "source", "--resamples", "200")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tracin (1 checkpoint") and "lowest-valued train rows" in out.stdout
    assert "tracin: gradients 54/54 rows" in out.stderr  # 41 train + 13 eval rows, one checkpoint
    folder = attribution_dir(run, "tracin")
    assert sorted(p.name for p in folder.iterdir()) == sorted(ATTRIBUTION_FILES)
    rows = [json.loads(x) for x in (folder / "rows.jsonl").read_text().splitlines()]
    segments = json.loads((folder / "segments.json").read_text())
    method = json.loads((folder / "method.json").read_text())
    assert len(rows) == 41 and set(rows[0]["slices"]) == {"source=human", "source=planted", "source=synthetic"}

    # the copy of the planted eval row is the most helpful train row for it (lr x |g|^2 against lr x <g, g'>, all
    # positive here: an untrained model's gradients share the direction of its frequent tokens), by a margin, and it
    # helps its copy more than it helps the other eval rows
    planted = next(r for r in rows if r["id"] == "planted")
    own = planted["slices"]["source=planted"]
    others = [r["slices"]["source=planted"] for r in rows if r["id"] != "planted"]
    assert own > 0 and own > 1.25 * max(others), (own, max(others))
    assert own > 1.5 * max(planted["slices"]["source=human"], planted["slices"]["source=synthetic"])
    assert planted["response"] == PLANTED["response"] and planted["text"] == PLANTED["prompt"]

    lrs = [json.loads(x)["lr"] for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert method["checkpoints"] == [
        {"name": "adapter", "step": 6, "learning_rate": pytest.approx(sum(lrs) / len(lrs)),
         "learning_rate_from": "train_log.jsonl (6 lines over 6 steps)"}
    ]  # fmt: skip
    assert method["projection"]["dim"] == 512 and method["projection"]["seed"] == 0
    assert method["parameters"]["count"] > 0 and method["left_out"] == {"train": 0, "eval": 0}
    assert abs(sum(r["value"] for r in rows) - segments["utility"]) < 1e-9
    by_source = [s for s in segments["overall"] if s["key"] == "source"]
    assert {s["value"] for s in by_source} == {"human", "planted", "synthetic"}
    assert abs(sum(s["sum"] for s in by_source) - segments["utility"]) < 1e-9
    assert all(s["ci_low"] <= s["sum"] <= s["ci_high"] for s in segments["overall"])

    verify = cli("reproduce", "--verify-only", str(run))
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--projection-dim", "0"], "--projection-dim must be at least 1, not 0"),
        (["--by", "color"], "--by color: no train row has that tag"),
        (["--projection-dim", "-3", "--by", "color"], "--projection-dim must be at least 1, not -3"),
        (["--projection", "fourier"], "unknown projection 'fourier'"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(cli, planted_run, args, message):
    run = planted_run
    before = sorted(p.relative_to(run) for p in run.rglob("*") if ATTRIBUTION not in p.parts)
    hashes = (run / "hashes.json").read_bytes()
    out = cli("attribute", "--run", str(run), "--method", "tracin", *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.relative_to(run) for p in run.rglob("*") if ATTRIBUTION not in p.parts) == before
    assert (run / "hashes.json").read_bytes() == hashes


def test_a_run_without_its_adapter_is_refused(cli, planted_run, tmp_path):
    run = shutil.copytree(planted_run, tmp_path / "r")
    shutil.rmtree(run / ATTRIBUTION, ignore_errors=True)
    (run / "adapter" / "adapter_model.safetensors").unlink()
    out = cli("attribute", "--run", str(run), "--method", "tracin")
    assert out.returncode == 2 and "has no checkpoint to take gradients at" in out.stderr, out.stderr
    assert not (run / ATTRIBUTION).exists()


@pytest.mark.parametrize("task", ["classification", "seq2seq"])
def test_the_other_tasks_run_end_to_end(cli, models, tmp_path, task):
    """A tiny classification run (an eval label the train split lacks: no loss, so left out and counted) and a tiny
    seq2seq run, valued and sealed."""
    from safetensors import safe_open

    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    if task == "classification":
        ev = cls_rows(12, 1) + [{"id": "n1", "text": "meh", "label": "neutral", "tags": {"source": "human"}}]
        splits, model, want = {"train": cls_rows(32), "eval": ev}, models["llama"], {"train": 0, "eval": 1}
    else:
        splits, model, want = {"train": sft_rows(32), "eval": sft_rows(12, 1)}, models["t5"], {"train": 0, "eval": 0}
    write_dataset(tmp_path / "datasets", "d", "v1", splits, task=task, **GENERATED)
    cfg = write_config(
        tmp_path / "train.yaml", task=task, model=str(model), dataset="d@v1", datasets_root=str(tmp_path / "datasets"),
        output_dir=str(tmp_path / "runs"), training={"max_steps": 4, "batch_size": 8, "max_length": 64},
    )  # fmt: skip
    run = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
    out = cli("attribute", "--run", str(run), "--method", "tracin", "--resamples", "100")
    assert out.returncode == 0, out.stderr
    method = json.loads((attribution_dir(run, "tracin") / "method.json").read_text())
    rows = [json.loads(x) for x in (attribution_dir(run, "tracin") / "rows.jsonl").read_text().splitlines()]
    assert method["task"] == task and method["left_out"] == want and len(rows) == 32
    assert ("label" in rows[0]) == (task == "classification") and any(r["value"] != 0 for r in rows)
    with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:  # the saved adapter, head included
        names = f.keys()
        assert method["parameters"]["count"] == sum(f.get_tensor(k).numel() for k in names)
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0
