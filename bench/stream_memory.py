"""Bench: peak RSS of training (a few steps, max_steps) with `data: {streaming: true}` and without, on generated
classification splits of N rows (default 100k and 2M), and of `verifily eval` on the resulting run.

Each measurement runs in a fresh subprocess and reports its peak resident set (VmHWM from /proc/self/status), so one
measurement's memory never counts in another's. The model is the 2-layer tiny llama of tests/tiny_models.py with a
classification head (built here, offline); the rows are short sentences with a label and one tag, every row unique.
Goal (issue 18): with streaming, the 2M-row training RSS within +10% of the 100k-row one. Without streaming, the same
numbers for contrast.

Eval (`verifily eval` of the last run trained in each mode, `EvalOptions(streaming=...)`) is measured on eval
splits of `--eval-rows` rows, not 2M: the tiny model classifies ~200-300 rows a second on these shared cores, so
an eval of 2M rows would take 2-3 hours; 20k vs 60k shows how its memory grows per row.

Run:  .venv/bin/python bench/stream_memory.py [--rows 100000 2000000] [--steps 5] [--eval-rows 20000 60000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = "the movie food phone service acting battery was great terrible slow wonderful loved broke".split()  # noqa: SIM905

CHILD = """
import json, sys, time
t0 = time.time()
kind, arg = sys.argv[1], sys.argv[2]
if kind == "train":
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions
    r = job.train(TrainOptions(config=arg, force=True), echo=lambda s: None)
    extra = {"steps": r.meta["metrics"]["global_step"]}
else:
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    ref, mode = sys.argv[3], sys.argv[4] == "streaming"
    opts = EvalOptions(dataset=ref, split="eval", streaming=mode, datasets_root=sys.argv[5], batch_size=64)
    out = evaluate_run(arg, opts)
    extra = {"n": out.results["n"], "accuracy": out.results["overall"]["accuracy"]}
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": round(hwm / 1024), "seconds": round(time.time() - t0, 1), **extra}))
"""


def write_split(path: Path, n: int, seed: int, prefix: str) -> dict:
    rnd = random.Random(seed)
    h = __import__("hashlib").sha256()
    with open(path, "wb") as f:
        buf = []
        for i in range(n):
            pos = rnd.random() < 0.5
            words = " ".join(rnd.choice(WORDS) for _ in range(8))
            row = {"id": f"{prefix}{i}", "text": f"{words} {i}", "label": "positive" if pos else "negative",
                   "tags": {"source": rnd.choice(["human", "synthetic"])}}  # fmt: skip
            buf.append(json.dumps(row).encode() + b"\n")
            if len(buf) >= 10_000:
                data = b"".join(buf)
                f.write(data)
                h.update(data)
                buf = []
        data = b"".join(buf)
        f.write(data)
        h.update(data)
    return {"path": path.name, "sha256": h.hexdigest(), "rows": n}


def make_dataset(root: Path, name: str, n: int, eval_rows: int) -> str:
    import yaml

    folder = root / name / "v1"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"eval": {"files": [write_split(folder / "eval.jsonl", eval_rows, 2, "e")]}}
    if n:
        splits["train"] = {"files": [write_split(folder / "train.jsonl", n, 1, "t")]}
    doc = {"schema_version": 1, "name": name, "version": "v1", "task": "classification",
           "fields": {"id": "id", "text": "text", "label": "label", "tags": "tags"}, "tag_keys": ["source"],
           "splits": splits}  # fmt: skip
    (folder / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return f"{name}@v1"


def child(kind: str, arg: str, env: dict, *more: str) -> dict:
    cmd = [sys.executable, "-c", CHILD, kind, arg, *more]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{kind} {arg} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 2_000_000])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--eval-rows", type=int, nargs="*", default=[20_000, 60_000])
    ap.add_argument("--modes", nargs="+", default=["streaming", "memory"])
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.tiny_models import make_tiny_llama

    tmp = Path(tempfile.mkdtemp(prefix="stream_memory_"))
    root = tmp / "datasets"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HOME=str(tmp / "hf"), HF_DATASETS_CACHE=str(tmp / "hf" / "datasets"), WANDB_MODE="offline",
               VERIFILY_CACHE=str(tmp / "vcache"), TOKENIZERS_PARALLELISM="false")  # fmt: skip
    model = make_tiny_llama(tmp / "llama")
    runs = {}
    for n in a.rows:  # training: a few steps on n rows (an eval split of 1,000 rows takes part in the data checks)
        t = time.time()
        ref = make_dataset(root, f"gen{n}", n, 1000)
        for mode in a.modes:
            name = f"{mode}-{n}"
            cfg = tmp / f"{name}.yaml"
            cfg.write_text(json.dumps({
                "task": "classification", "model": str(model), "dataset": ref, "datasets_root": str(root),
                "output_dir": str(tmp / "runs"), "run_name": name, "data": {"streaming": mode == "streaming"},
                "training": {"max_steps": a.steps, "batch_size": 8, "max_length": 32, "checkpoint_minutes": 0},
            }))  # fmt: skip
            print(json.dumps({"train_rows": n, "mode": mode, **child("train", str(cfg), env)}), flush=True)
            runs[mode] = tmp / "runs" / name
        print(f"# {n} rows: {time.time() - t:.0f} s", file=sys.stderr)
    for e in a.eval_rows:  # eval of the last run trained in each mode, on an eval split of e rows
        ref = make_dataset(root, f"eval{e}", 0, e)
        for mode in a.modes:
            res = child("eval", str(runs[mode]), env, ref, mode, str(root))
            print(json.dumps({"eval_rows": e, "mode": mode, **res}), flush=True)


if __name__ == "__main__":
    main()
