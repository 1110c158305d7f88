"""TracIn (`verifily attribute --method tracin`): the value of a train row for an eval row is the sum over the run's
checkpoints of lr x <g_train, g_eval>, the gradients of the two rows' training losses with respect to the adapter's
parameters (Pruthi et al. 2020, TracIn-CP). Positive: a gradient step on the train row lowers the eval row's loss
(it helped). Works for sft, seq2seq and classification.

- Gradients are per example and randomly projected to `--projection-dim` numbers (`gradients`: one batched backward,
  a seeded random projection as in TRAK and LoGra: sparse CountSketch by default, dense Gaussian on request), so the
  dot products are unbiased estimates whose error shrinks as 1/sqrt(dim); a row's projected gradient is computed
  once per checkpoint, train and eval rows alike.
- Checkpoints: the run's adapter snapshots (`training.snapshots`: snapshots/step-<n>/) and its final adapter. Each
  stands for the steps since the one before and is weighted by the sum of their learning rates over the run's steps
  (train_log.jsonl's lr, each line standing for the steps it covers; training.learning_rate when the log has none),
  so the weights add up to the run's mean learning rate. A run trained with the default `snapshots: 1` has one
  checkpoint, its final adapter, standing for the whole run; method.json says so.
- Rows that training could not use (a classification label the train split lacks, an sft prompt that fills
  max_length) have no loss to differentiate: their gradient is zero, so their values are 0; method.json counts them.
The slices, segments, intervals and files are those of every method (`common`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..runs import layout
from . import common, gradients
from .runner import AttributeOptions, Attribution, _stderr

REFERENCE = "Pruthi et al., Estimating Training Data Influence by Tracing Gradient Descent, NeurIPS 2020 (TracIn-CP)"
TASKS = ("sft", "seq2seq", "classification")
PROGRESS_SECONDS = 2.0
VALUE_BLOCK = 1024  # eval rows per block of the values matrix
PROJECTIONS = {
    "sketch": "CountSketch: each gradient coordinate added with a random sign to one random output",
    "gaussian": "dense, entries N(0, 1/dim)",
}


def interval_weights(run: Any, bounds: list[int]) -> tuple[list[float], str]:
    """For checkpoints at the optimizer steps `bounds` (ascending, the last the final step): each one's weight, the
    sum of the learning rates of the steps since the checkpoint before, over the run's steps — so the weights add up
    to the run's mean learning rate. Read from train_log.jsonl (each line's lr standing for the steps since the line
    before; `train.snapshots` has a line at every snapshot); training.learning_rate when the log has none."""
    import json

    log = run.dir / layout.TRAIN_LOG
    lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
    windows, prev = [], 0
    for line in lines:
        rec = json.loads(line) if line.strip() else {}
        lr, step = rec.get("lr"), rec.get("step")
        if isinstance(lr, (int, float)) and isinstance(step, int) and step > prev:
            windows.append((prev, step, float(lr)))
            prev = step
    if not windows:
        lr = float(run.config.training.learning_rate)
        last = max(bounds[-1], 1)
        edges = [0, *bounds]
        return [lr * (b - a) / last for a, b in zip(edges, edges[1:], strict=False)], "training.learning_rate"
    total = prev
    sums = [0.0] * len(bounds)
    for a, b, lr in windows:
        i = next((i for i, edge in enumerate(bounds) if b <= edge), len(bounds) - 1)
        sums[i] += lr * (b - a)
    return [x / total for x in sums], f"{layout.TRAIN_LOG} ({len(windows)} lines over {total} steps)"


def checkpoints(run: Any) -> list[dict[str, Any]]:
    """The checkpoints to take gradients at: the run's snapshots (training.snapshots) and its final adapter, each
    weighted by the learning rates of the steps it stands for."""
    weights = run.dir / layout.ADAPTER_WEIGHTS
    if not weights.is_file():
        raise VerifilyError(
            f"run {run.dir} has no checkpoint to take gradients at: {weights} is missing",
            hint="TracIn needs the run's adapter; train the run again",
        )
    last = (run.meta.get("metrics") or {}).get("global_step")
    snaps = [(step, d) for step, d in layout.snapshot_dirs(run.dir) if not isinstance(last, int) or step < last]
    final = last if isinstance(last, int) else (snaps[-1][0] + 1 if snaps else 1)
    bounds = [step for step, _ in snaps] + [final]
    lrs, source = interval_weights(run, bounds)
    names = [str(d.relative_to(run.dir)) for _, d in snaps] + [layout.ADAPTER]
    return [
        {"name": name, "step": step, "learning_rate": lr, "learning_rate_from": source}
        for name, step, lr in zip(names, bounds, lrs, strict=True)
    ]


def encode_rows(task: str, rows: Any, tokenizer: Any, max_length: int, label_map: Any) -> list[dict | None]:
    """Each row as training encodes it (`train.data.encode`), None for a row training leaves out."""
    from ..train import data

    def one(cols: dict[str, list[Any]], i: int) -> dict[str, Any]:
        return {"input_ids": cols["input_ids"][i], "labels": cols["labels"][i]}

    cols = data.encode(task, rows, tokenizer, max_length, label_map).columns
    if len(cols["input_ids"]) == len(rows):
        return [one(cols, i) for i in range(len(rows))]
    out: list[dict | None] = []
    for i in range(len(rows)):  # some rows were left out: find which, one row at a time
        c = data.encode(task, rows.select([i]), tokenizer, max_length, label_map).columns
        out.append(one(c, 0) if c["input_ids"] else None)
    return out


class Progress:
    """`tracin: gradients N/M rows` on stderr, at most every PROGRESS_SECONDS, and at the end."""

    def __init__(self, total: int):
        self.total, self.done, self.last = total, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        if not n:
            return
        self.done += n
        now = time.monotonic()
        if self.done >= self.total or now - self.last >= PROGRESS_SECONDS:
            self.last = now
            _stderr(f"tracin: gradients {self.done:,}/{self.total:,} rows")


def project_rows(lm: Any, task: str, encoded: list[dict | None], projector: Any, batch: int, progress: Any):
    """(rows x dim) float32: each row's projected gradient (zeros for rows without one)."""
    from ..evaluate.inference import length_sorted_batches

    out = np.zeros((len(encoded), projector.dim), dtype=np.float32)
    have = [(i, r) for i, r in enumerate(encoded) if r is not None]
    params = gradients.trainable(lm.model)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for part in length_sorted_batches([len(r["input_ids"]) for _, r in have], batch):
        idx = [have[j][0] for j in part]
        tensors = gradients.pad_batch(task, [have[j][1] for j in part], pad)
        tensors = {k: v.to(lm.device) for k, v in tensors.items()}
        grads = gradients.per_example_grads(lm.model, task, tensors, params)
        out[idx] = projector(grads).cpu().numpy()
        progress(len(idx))
    progress(len(encoded) - len(have))
    return out


def attribute(run_dir: Path, opts: AttributeOptions) -> Attribution:
    """The tracin flow of `runner.attribute_run` (which holds the run's lock)."""
    from ..evaluate import inference
    from ..evaluate.runner import base_model_dir, check_run
    from ..runs.folder import load_run

    first = load_run(run_dir)
    task = str(first.meta.get("task") or first.config.task)
    if task not in TASKS:
        raise VerifilyError(f"TracIn values {', '.join(TASKS)} runs; this run's task is {task}")
    common.refuse_label_tokens(first, "tracin")
    dim = opts.projection_dim
    if dim < 1:
        raise VerifilyError(f"--projection-dim must be at least 1, not {dim}")
    if opts.projection not in gradients.Projector.KINDS:
        raise VerifilyError(
            f"unknown projection {opts.projection!r}", hint=f"use one of: {', '.join(gradients.Projector.KINDS)}"
        )
    ckpts = checkpoints(first)
    run = check_run(run_dir)
    confidence = opts.confidence if opts.confidence is not None else run.config.eval.confidence
    train_manifest, train_split, train = common.split_rows(run, "train", opts.datasets_root)
    eval_manifest, eval_split, ev = common.split_rows(run, "eval", opts.datasets_root)
    segs, seg_matrix = common.segments_of(list(train["tags"]), opts.by)
    slices = common.eval_slices(run, list(ev["tags"]), opts.slice_by, _stderr)

    started = time.perf_counter()
    seconds: dict[str, float] = {"load": 0.0, "gradients": 0.0}
    batch = opts.batch_size or run.config.training.batch_size
    max_length = run.config.training.max_length
    train_parts, eval_parts = [], []
    used: list[dict[str, Any]] = []
    n_params, left_out = 0, {"train": 0, "eval": 0}
    progress = Progress((len(train) + len(ev)) * len(ckpts))
    for ck in ckpts:
        t0 = time.perf_counter()
        adapter, tok_dir = run.dir / ck["name"], run.dir / layout.TOKENIZER
        lm = inference.load_for_eval(task, base_model_dir(run), adapter, tok_dir, max_length=max_length, merge=False)
        params = gradients.trainable(lm.model)
        sizes = {n: p.numel() for n, p in params.items()}
        n_params = sum(sizes.values())
        projector = gradients.Projector(sizes, dim, opts.seed, opts.projection)
        enc_train = encode_rows(task, train, lm.tokenizer, max_length, lm.label_map)
        enc_eval = encode_rows(task, ev, lm.tokenizer, max_length, lm.label_map)
        left_out = {"train": enc_train.count(None), "eval": enc_eval.count(None)}
        t1 = time.perf_counter()
        if ck is ckpts[0]:
            _stderr(f"tracin: {len(train):,} train and {len(ev):,} eval rows, {n_params:,} parameters ({lm.device})")
        scale = np.float32(np.sqrt(ck["learning_rate"]))
        train_parts.append(scale * project_rows(lm, task, enc_train, projector, batch, progress))
        eval_parts.append(scale * project_rows(lm, task, enc_eval, projector, batch, progress))
        seconds["load"] += t1 - t0
        seconds["gradients"] += time.perf_counter() - t1
        used.append(ck)
    g_train, g_eval = np.concatenate(train_parts, axis=1), np.concatenate(eval_parts, axis=1)

    t2 = time.perf_counter()
    totals = common.Totals(len(train), len(ev), slices, seg_matrix)
    for start in range(0, len(ev), VALUE_BLOCK):
        part = np.arange(start, min(start + VALUE_BLOCK, len(ev)))
        totals.add(part, (g_eval[part] @ g_train.T).astype(np.float64))
    seconds["values"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - started

    segments = common.segments_doc(opts.method, totals, segs, opts.resamples, confidence, opts.seed)
    rows = common.rows_doc(train, totals)
    method = {
        "schema_version": 1,
        "method": opts.method,
        "reference": REFERENCE,
        "task": task,
        "value": "sum over checkpoints of learning_rate x <projected gradient of the train row's loss, of the eval "
        "row's loss>; positive: a step on the train row lowers the eval row's loss (helped)",
        "loss": {
            "sft": "mean cross-entropy of the row's label tokens (the response), as trained",
            "seq2seq": "mean cross-entropy of the row's target tokens, as trained",
            "classification": "cross-entropy of the row's label, as trained",
        }[task],
        "parameters": {"count": n_params, "which": "the adapter's trainable parameters (LoRA, modules saved with it)"},
        "projection": {"kind": opts.projection, "dim": dim, "seed": opts.seed, "matrix": PROJECTIONS[opts.projection]},
        "checkpoints": [{k: v for k, v in c.items()} for c in used],
        "checkpoint_note": (
            f"{len(used)} checkpoints (training.snapshots), each weighted by the learning rates of the steps since the "
            "one before"
            if len(used) > 1
            else "one checkpoint, the final adapter, weighted by the run's mean learning rate (train with "
            "training.snapshots > 1 to keep adapters along the way: TracIn-CP sums over them)"
        ),
        "left_out": left_out,
        "train": {"ref": train_manifest.ref, "split": train_split, "n": len(train)},
        "eval": {"ref": eval_manifest.ref, "split": eval_split, "n": len(ev)},
        "by": sorted({k for k, _ in segs}, key=[k for k, _ in segs].index),
        "slices": totals.labels,
        "batch_size": batch,
        "resamples": opts.resamples,
        "confidence": confidence,
        "seed": opts.seed,
        "utility": float(totals.row_value.sum()),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    root = common.write(run.dir, opts.method, rows, segments, method)
    return Attribution(layout.attribution_dir(run.dir, opts.method), method, segments, rows, root)
