"""Bench: what one tiny job costs the runner, as a fresh `python -m verifily_action.cli train` subprocess vs a child
forked from the runner's forkserver (verifily_action/runner/child.py: torch, transformers, peft, datasets and the
training code loaded once per runner).

The job: tests/tiny_models.py's 2-layer llama, a 16-row sft dataset, max_steps 1 (so the time is nearly all start-up:
imports, model and data loading, seal). Each job trains into a fresh folder (no run cache hit). The forkserver's
first job includes starting the forkserver itself (once per runner); the median is over the rest.

Run:  .venv/bin/python bench/runner_overhead.py [--jobs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5)
    args = ap.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")

    from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
    from tests.tiny_models import make_tiny_llama
    from verifily_action.runner.child import Child

    d = Path(tempfile.mkdtemp(prefix="runner-bench-"))
    write_dataset(d / "datasets", "sft", "v1", {"train": sft_rows(16), "eval": sft_rows(8, 1)}, task="sft", **GENERATED)
    assets = {"root": d / "datasets", "model": make_tiny_llama(d / "llama")}

    fresh = []
    for i in range(args.jobs):
        cfg = tiny_sft_config(d / f"fresh-{i}", assets, {"max_steps": 1})
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "verifily_action.cli", "train", "--config", str(cfg)]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        fresh.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stderr[-2000:]

    forked = []
    for i in range(args.jobs + 1):
        folder = d / f"fork-{i}"
        cfg = tiny_sft_config(folder, assets, {"max_steps": 1})
        t = time.perf_counter()
        code = Child(["train", "--config", str(cfg)], folder, folder / "train.log", folder / "out.txt").wait(600)
        forked.append(time.perf_counter() - t)
        assert code == 0, (folder / "train.log").read_text()[-2000:]

    def row(name: str, times: list[float]) -> str:
        return f"{name:<18} median {statistics.median(times):.2f} s (all: {', '.join(f'{x:.2f}' for x in times)})"

    print(f"load average {os.getloadavg()[0]:.1f}; {args.jobs} jobs each")
    print(row("fresh subprocess", fresh))
    print(row("forkserver child", forked[1:]) + f"; the first, with the forkserver's start: {forked[0]:.2f} s")


if __name__ == "__main__":
    main()
