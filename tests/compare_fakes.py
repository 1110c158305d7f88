"""Hand-built run folders for compare tests: run_meta.json, config.yaml and one evaluation whose eval_results.json is
scored by the real `evaluate.runner.score` from predictions we choose (so the answers are known)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verifily_action.evaluate import metrics
from verifily_action.evaluate.runner import build_records, score
from verifily_action.evaluate.slices import parse_expression


def records(
    n_per_source: Mapping[str, int],
    accuracy: Mapping[str, float],
    *,
    seed: int,
    id_prefix: str = "ex",
    labels: Sequence[str] = ("negative", "positive"),
    losses: bool = False,
    labelled: bool = False,
) -> list[dict[str, Any]]:
    """Classification records: for each source, that many examples, exactly round(acc * n) of them correct. With
    `labelled`, each group is a slice label (`source=human&origin=imdb`) whose tags its rows get instead of
    `{"source": name}`."""
    rng = np.random.default_rng(seed)
    out = []
    k = 0
    for source, n in n_per_source.items():
        right = set(rng.choice(n, size=round(accuracy[source] * n), replace=False).tolist())
        for i in range(n):
            ref = labels[(k * 2654435761 >> 7) % len(labels)]  # depends on the id only: runs pair
            pred = ref if i in right else labels[(labels.index(ref) + 1) % len(labels)]
            out.append(
                {
                    "id": f"{id_prefix}-{k:05d}",
                    "tags": _tags(source) if labelled else {"source": source},
                    "reference": ref,
                    "prediction": pred,
                    "score": float(ref == pred),
                    "loss": float(rng.uniform(0.1, 1.0)) if losses else None,
                    "correct": ref == pred,
                }
            )
            k += 1
    return out


DOMAINS, PER_DOMAIN = 10, 15  # 150 intents, as in CLINC150


def intent_records(rows: int = 3000, seed: int = 0) -> list[dict]:
    """Rows of 150 intents in 10 domains, tagged by domain and source. 85% right; a wrong prediction names an intent
    of the same domain or of any domain (a stray label for the slice). `source=synthetic` (5%) holds mostly one row
    per intent, and there every intent seen once is predicted wrong: rare labels score unlike the common ones."""
    rng = np.random.default_rng(seed)
    labels = [f"d{d}_intent{i}" for d in range(DOMAINS) for i in range(PER_DOMAIN)]
    refs, preds, tags = [], [], []
    for _ in range(rows):
        ref = labels[rng.integers(len(labels))]
        domain = ref.split("_")[0]
        u = rng.random()
        pred = ref if u < 0.85 else f"{domain}_intent{rng.integers(PER_DOMAIN)}" if u < 0.92 else rng.choice(labels)
        refs.append(ref)
        preds.append(str(pred))
        tags.append({"domain": domain, "source": "synthetic" if rng.random() < 0.05 else "human"})
    synthetic = [i for i, t in enumerate(tags) if t["source"] == "synthetic"]
    once = {r for r in {refs[i] for i in synthetic} if sum(refs[i] == r for i in synthetic) == 1}
    for i in synthetic:
        if refs[i] in once:
            preds[i] = labels[(labels.index(refs[i]) + PER_DOMAIN) % len(labels)]  # another domain's intent
    ids = [str(i) for i in range(rows)]
    return build_records("classification", ids, tags, refs, preds, [None] * rows)


def _tags(label: str) -> dict[str, str]:
    return {t.key: str(t.value) for t in parse_expression(label).terms}


def make_run(
    root: Path,
    name: str,
    recs: list[dict[str, Any]],
    *,
    task: str = "classification",
    metric_names: Sequence[str] | None = None,
    slice_by: Sequence[str] = ("source",),
    cross: Sequence[str] = (),
    eval_name: str = "ds_demo@v1-eval",
    train_ref: str = "ds_demo@v1",
    gates: Sequence[str] = (),
    status: str = "completed",
    resamples: int = 1000,
    content_hash: str | None = None,
) -> Path:
    d = root / name
    edir = d / "eval" / eval_name
    edir.mkdir(parents=True)
    names = list(metric_names or metrics.DEFAULT_METRICS[task])
    scored = score(
        task,
        names,
        recs,
        slice_by=list(slice_by),
        cross=list(cross),
        min_slice_size=30,
        resamples=resamples,
        confidence=0.95,
        seed=0,
    )
    ds_name, _, version = eval_name.split("-")[0].partition("@")
    results = {
        "schema_version": 1,
        "run_id": f"id-{name}",
        "task": task,
        "eval_name": eval_name,
        "dataset": {
            "ref": f"{ds_name}@{version}",
            "name": ds_name,
            "version": version,
            "split": "eval",
            "hash": None,
            **({"content_hash": content_hash} if content_hash else {}),
        },
        "n": len(recs),
        "confidence": 0.95,
        "bootstrap_resamples": resamples,
        "seed": 0,
        "min_slice_size": 30,
        "metrics": names,
        "directions": {m: metrics.DIRECTIONS[m] for m in names},
        **scored,
        "unseen_labels": None,
        "files": {"predictions": "predictions.jsonl", "hard_examples": "hard_examples.jsonl"},
        "created_at": "2026-12-01T00:00:00+00:00",
        "timing": {"seconds": 1.0, "examples_per_second": float(len(recs)), "batch_size": 32, "device": "cpu"},
    }
    (edir / "eval_results.json").write_text(json.dumps(results), encoding="utf-8")
    (edir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    tname, _, tver = train_ref.partition("@")
    meta = {
        "schema_version": 1,
        "id": f"id-{name}",
        "status": status,
        "task": task,
        "dataset": {"ref": train_ref, "name": tname, "version": tver, "hash": "0" * 64, "split": "train"},
    }
    (d / "run_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    cfg = f"task: {task}\nmodel: m\ndataset: {train_ref}\ngates: {json.dumps(list(gates))}\n"
    (d / "config.yaml").write_text(cfg, encoding="utf-8")
    return d
