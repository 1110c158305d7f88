"""Wall time of `verifily --help` (and `validate`) next to `python -c pass`; run by hand, numbers go to RESULTS.md.

    python bench/cli_latency.py [--repeat 15]

Goal (issue 2): `verifily --help` <= 0.3 s on a 2-core machine. Reports the median and min of each command, and
the difference to a bare interpreter start, measured in the same run so machine noise affects all alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    verifily = str(Path(sys.executable).parent / "verifily")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "verifily --help": [verifily, "--help"],
        "verifily --version": [verifily, "--version"],
        "verifily validate examples/train.yaml": [verifily, "validate", str(REPO / "examples" / "train.yaml")],
    }
    timed(cases["verifily --help"], 2)  # warm the page cache
    base = None
    print(f"{'command':42} {'median s':>9} {'min s':>7} {'minus python':>13}")
    for name, cmd in cases.items():
        ts = timed(cmd, args.repeat)
        med = statistics.median(ts)
        base = med if base is None else base
        print(f"{name:42} {med:9.3f} {min(ts):7.3f} {med - base:13.3f}")


if __name__ == "__main__":
    main()
