"""Latency of `verifily compare` for two runs (goal: <= 0.5 s).

Builds two hand-made run folders (the eval-set size is --n, half human, half synthetic; same example ids, so the
comparison is paired) and times:
  * in-process `compare()` (reading the folders, pairing, bootstrap + permutation per slice and metric, summary);
  * the whole command, `python -m verifily_action.cli compare --runs a,b` (interpreter start and imports included),
    with no dataset diff (no manifests at hand) and, with --datasets, a diff of the real ds_demo v1/v2 manifests.

    python bench/compare_latency.py [--n 1200] [--repeat 7] [--datasets examples/datasets]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.compare_fakes import make_run, records  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds; CPU counts this process and its finished children, the
    steadier number on a shared machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        r0, c0, t = os.times(), time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        r1 = os.times()
        cpus.append(
            time.process_time() - c0 + (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
        )
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1200, help="eval examples per run")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--datasets", default=None, help="datasets root holding ds_demo v1 and v2 (for the diff)")
    args = ap.parse_args()
    half = args.n // 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = make_run(root, "a", records({"human": half, "synthetic": half}, {"human": 0.85, "synthetic": 0.68}, seed=1))
        b = make_run(root, "b", records({"human": half, "synthetic": half}, {"human": 0.85, "synthetic": 0.74}, seed=2))
        if args.datasets:
            for d, v in ((a, "v1"), (b, "v2")):
                meta = json.loads((d / "run_meta.json").read_text())
                meta["dataset"]["ref"] = f"ds_demo@{v}"
                (d / "run_meta.json").write_text(json.dumps(meta))
        from verifily_action.compare import compare

        kwargs = {"datasets_root": args.datasets} if args.datasets else {}
        compare([a, b], **kwargs)  # warm the imports
        med, best, cpu = timed(lambda: compare([a, b], **kwargs), args.repeat)
        print(f"in-process compare(), n={args.n}: wall median {med:.3f} s, best {best:.3f} s; CPU {cpu:.3f} s")
        cmd = [sys.executable, "-m", "verifily_action.cli", "compare", "--runs", f"{a},{b}", "-f", "json"]
        if args.datasets:
            cmd += ["--datasets-root", args.datasets]
        med, best, cpu = timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat)
        print(
            f"CLI `verifily compare` (process start included), n={args.n}: wall median {med:.3f} s, "
            f"best {best:.3f} s; CPU {cpu:.3f} s"
        )


if __name__ == "__main__":
    main()
