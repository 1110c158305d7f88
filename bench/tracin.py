"""TracIn's time against the training time of the run it values (issue 15 item 4; goal: tracin <= 3x train).

    python bench/tracin.py [--out /tmp/verifily-tracin] [--part demo|tiny|all] [--threads N]

demo: the demo config (examples/train.yaml: MiniLM + LoRA r=16, half an epoch of ds_demo v1's 2,000 train rows),
      then `verifily attribute --method tracin` on its 2,000 train x 1,200 eval rows.
tiny: a tiny random-init llama (tests/tiny_models.py) on 400 sft rows (one epoch, batch 8), tracin on 400 x 100.
Each step runs through the real CLI (`python -m verifily_action.cli`, offline) and is timed end to end (start-up,
loading, the work, the writes), with the phases tracin records in method.json. `--threads` sets OMP_NUM_THREADS for
both (one thread is steadier on a machine other jobs share).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def timed(*args: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "verifily_action.cli", *args], capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        sys.exit(f"verifily {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def measure(name: str, config: Path, run: Path) -> dict:
    train_s = timed("train", "--config", str(config), "--force")
    tracin_s = timed("attribute", "--run", str(run), "--method", "tracin")
    method = json.loads((run / "attribution" / "tracin" / "method.json").read_text())
    out = {
        "part": name,
        "train_rows": method["train"]["n"],
        "eval_rows": method["eval"]["n"],
        "parameters": method["parameters"]["count"],
        "train_s": round(train_s, 1),
        "tracin_s": round(tracin_s, 1),
        "ratio": round(tracin_s / train_s, 2),
        "tracin_phases_s": method["seconds"],
        "load_average": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(out), flush=True)
    return out


def demo(out: Path) -> dict:
    cfg = yaml.safe_load((REPO / "examples" / "train.yaml").read_text())
    cfg.update(datasets_root=str(REPO / "examples" / "datasets"), output_dir=str(out / "runs"), run_name="demo")
    path = out / "demo.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return measure("demo", path, out / "runs" / "demo")


def tiny(out: Path) -> dict:
    from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
    from tests.tiny_models import make_tiny_llama

    root = out / "datasets"
    write_dataset(root, "sft", "v1", {"train": sft_rows(400), "eval": sft_rows(100, 1)}, task="sft", **GENERATED)
    model = make_tiny_llama(out / "llama")
    training = {"epochs": 1, "batch_size": 8, "learning_rate": 0.01}
    config = tiny_sft_config(out, {"model": model, "root": root}, training)
    return measure("tiny", config, out / "runs" / "r")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/verifily-tracin")
    ap.add_argument("--part", choices=["demo", "tiny", "all"], default="all")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        ENV["OMP_NUM_THREADS"] = str(args.threads)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for part in ("tiny", "demo") if args.part == "all" else (args.part,):
        (tiny if part == "tiny" else demo)(out / part)


if __name__ == "__main__":
    main()
