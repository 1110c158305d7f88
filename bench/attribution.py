"""Data attribution, measured (issue 15): planted label noise, a planted bad segment, and KNN-Shapley's speed.

    python bench/attribution.py [--out /tmp/verifily-attr] [--part noise|segment|speed|all] [--epochs E]
                                [--noise symmetric|one-way] [--planted N]

noise:   flip the labels of 10% of ds_demo v1's train rows (seeded; `one-way`: all of them positive rows, a biased
         labeller), train the demo config (examples/train.yaml; --epochs: another number of epochs),
         `verifily attribute` (knn-shapley): mislabel detection AUC (goal >= 0.9); then `dataset derive` without
         the lowest-valued 10%, retrain, and `compare` the two runs (goal: a significant paired accuracy gain).
segment: ds_demo v1's train rows plus 300 (--planted) copies of them with shuffled labels under their own origin
         (`scraped`);
         `attribute --method loo --by origin --seeds 3` (BENCH_SEEDS) must name `scraped` the one harmful segment,
         and no clean one.
speed:   KNN-Shapley of 20,000 train x 2,000 eval rows (384-d random unit vectors, as MiniLM's) — goal <= 60 s —
         and MiniLM's embedding rate on this machine (the pass timed apart).
Runs every step through the real CLI (`python -m verifily_action.cli`), offline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEMO = REPO / "examples" / "datasets" / "ds_demo" / "v1"
EPOCHS = ""  # --epochs: the demo config's 0.5 unless given
NOISE = "symmetric"  # --noise: which rows the noise part flips
PLANTED = 300  # --planted: the segment part's shuffled-label rows
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def cli(*args: str) -> str:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "verifily_action.cli", *args], capture_output=True, text=True, env=ENV)
    if done.returncode not in (0, 1):
        sys.exit(f"verifily {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    print(f"  [{time.perf_counter() - t:6.1f} s] verifily {' '.join(args[:2])} …", flush=True)
    return done.stdout


def rows(split: str) -> list[dict]:
    return [json.loads(x) for x in (DEMO / f"{split}.jsonl").read_text().splitlines()]


def config(out: Path, dataset: str) -> Path:
    text = (REPO / "examples" / "train.yaml").read_text()
    text = text.replace("dataset: ds_demo@v1", f"dataset: {dataset}").replace(
        "datasets_root: datasets", f"datasets_root: {out / 'datasets'}"
    )
    text = text.replace("output_dir: runs", f"output_dir: {out / 'runs'}")
    if EPOCHS:
        text = text.replace("epochs: 0.5,", f"epochs: {EPOCHS},")
    path = out / f"{dataset.replace('@', '-')}.yaml"
    path.write_text(text)
    return path


def train(out: Path, dataset: str) -> Path:
    run = Path(cli("train", "--config", str(config(out, dataset))).strip().splitlines()[-1])
    cli("eval", "--run", str(run))
    return run


def auc(scores: list[float], positive: list[bool]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive, scores))


def noise(out: Path) -> None:
    from tests.builders import write_dataset

    print(f"== planted label noise (10% of ds_demo v1's train rows flipped, {NOISE})")
    rnd = random.Random(20261202)
    train_rows, eval_rows = rows("train"), rows("eval")
    pool = range(len(train_rows))
    if NOISE == "one-way":  # a biased labeller: only positive rows are flipped (to negative)
        pool = [i for i in pool if train_rows[i]["label"] == "positive"]
    flipped = set(rnd.sample(pool, len(train_rows) // 10))
    for i in flipped:
        train_rows[i]["label"] = "negative" if train_rows[i]["label"] == "positive" else "positive"
    write_dataset(out / "datasets", "noisy", "v1", {"train": train_rows, "eval": eval_rows})
    run = train(out, "noisy@v1")
    cli("attribute", "--run", str(run))
    method = json.loads((run / "attribution/knn-shapley/method.json").read_text())
    values = [json.loads(x) for x in (run / "attribution/knn-shapley/rows.jsonl").read_text().splitlines()]
    ids = {train_rows[i]["id"] for i in flipped}
    print(f"  knn-shapley: {method['seconds']} (embedding apart from values)")
    print(f"  mislabel detection AUC {auc([-v['value'] for v in values], [v['id'] in ids for v in values]):.3f}")
    lowest = sorted(values, key=lambda v: v["value"])[: len(values) // 10]
    (out / "lowest.txt").write_text("".join(v["id"] + "\n" for v in lowest))
    caught = sum(v["id"] in ids for v in lowest)
    print(f"  the lowest-valued 10% ({len(lowest)} rows) hold {caught} of the {len(ids)} flipped rows")
    cli("dataset", "derive", "noisy@v1", "--to", "v2", "--drop-ids", str(out / "lowest.txt"),
        "--datasets-root", str(out / "datasets"))  # fmt: skip
    cleaned = train(out, "noisy@v2")
    report = json.loads(cli("compare", "--runs", f"{run},{cleaned}", "-f", "json"))
    for row in report["rows"]:
        if row["metric"] == "accuracy":
            d = row["deltas"][0]
            name = json.dumps(row["slice"]) if row["slice"] else "overall"
            print(f"  retrained without them: accuracy {name} {d['delta'] * 100:+.2f} pts "
                  f"[{d['ci_low'] * 100:+.2f}, {d['ci_high'] * 100:+.2f}] q={d['q_value']:.3g} "
                  f"significant={d['significant']}")  # fmt: skip


def segment(out: Path) -> None:
    from tests.builders import write_dataset

    print(f"== planted bad segment ({PLANTED} shuffled-label rows, origin scraped)")
    rnd = random.Random(7)
    train_rows, eval_rows = rows("train"), rows("eval")
    extra = rnd.sample(train_rows, PLANTED)
    extra = [dict(r, id=f"scraped-{i}", tags={"source": "synthetic", "origin": "scraped"}) for i, r in enumerate(extra)]
    labels = [r["label"] for r in extra]
    rnd.shuffle(labels)
    for r, label in zip(extra, labels, strict=True):
        r["label"] = label
    write_dataset(out / "datasets", "planted", "v1", {"train": train_rows + extra, "eval": eval_rows})
    run = train(out, "planted@v1")
    seeds = os.environ.get("BENCH_SEEDS", "3")
    cli("attribute", "--run", str(run), "--method", "loo", "--by", "origin", "--jobs", "2", "--seeds", seeds,
        "--budget", "40")  # fmt: skip
    seg = json.loads((run / "attribution/loo/segments.json").read_text())
    for s in seg["overall"]:
        print(f"  origin={s['value']:<9} rows {s['rows']:>5}  {s['sum'] * 100:+6.2f} pts "
              f"[{s['ci_low'] * 100:+6.2f}, {s['ci_high'] * 100:+6.2f}]  {s['verdict']}")  # fmt: skip
    print(f"  {json.loads((run / 'attribution/loo/method.json').read_text())['seconds']:.0f} s for the retrains")


def speed() -> None:
    import numpy as np

    from verifily_action.attribute.knn_shapley import knn_shapley

    print("== speed")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(22_000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.integers(0, 2, 22_000)
    t = time.perf_counter()
    knn_shapley(x[:20_000], y[:20_000], x[20_000:], y[20_000:], 5)
    print(f"  knn-shapley 20,000 train x 2,000 eval rows (384-d): {time.perf_counter() - t:.1f} s")
    # the truncated approximation (--nearest M) against exact, on clustered points (20 labelled clusters, 15% noise)
    centers, center_label = rng.normal(size=(20, 384)), rng.integers(0, 2, 20)

    def points(n: int):
        c = rng.integers(0, 20, n)
        p = centers[c] + rng.normal(scale=1.5, size=(n, 384))
        label = np.where(rng.random(n) < 0.85, center_label[c], 1 - center_label[c])
        return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32), label

    (tx, ty), (qx, qy) = points(20_000), points(2_000)
    exact = knn_shapley(tx, ty, qx, qy, 5)
    low = set(np.argsort(exact)[:2_000].tolist())
    for m in (500, 2_000, 5_000):
        t = time.perf_counter()
        approx = knn_shapley(tx, ty, qx, qy, 5, nearest=m)
        took = time.perf_counter() - t
        overlap = len(low & set(np.argsort(approx)[:2_000].tolist())) / 2_000
        err = np.abs(exact - approx).max() / np.abs(exact).max()
        print(
            f"  --nearest {m}: {took:.1f} s, max error {err:.1%} of the largest value, lowest 10% shared {overlap:.1%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/verifily-attribution-bench")
    ap.add_argument("--epochs", default="", help="train this many epochs instead of the demo config's 0.5")
    ap.add_argument(
        "--noise",
        default="symmetric",
        choices=["symmetric", "one-way"],
        help="flip 10%% of all rows (symmetric) or 10%% of all rows taken from the positive ones (one-way)",
    )
    ap.add_argument("--planted", type=int, default=300, help="shuffled-label rows in the segment part")
    ap.add_argument("--part", default="all", choices=["noise", "segment", "speed", "all"])
    args = ap.parse_args()
    out = Path(args.out)
    global EPOCHS, NOISE, PLANTED
    EPOCHS, NOISE, PLANTED = args.epochs, args.noise, args.planted
    if args.part in ("noise", "segment", "all"):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
    if args.part in ("speed", "all"):
        speed()
    if args.part in ("noise", "all"):
        noise(out)
    if args.part in ("segment", "all"):
        segment(out)


if __name__ == "__main__":
    main()
