"""Throughput of `verifily_action.hashing.sha256_file` vs coreutils `sha256sum` on the same file; run by hand.

    python bench/hash_throughput.py [--size-mb 1024] [--repeat 3] [--file PATH]

Goal (issue 3): >= 0.9x sha256sum. Writes a random file under bench/out/ (deleted afterwards unless --keep), warms
the page cache once, then alternates the two so machine noise hits both alike; reports the best and median MB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from verifily_action.hashing import sha256_file  # noqa: E402


def make_file(path: Path, size_mb: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(size_mb):
            f.write(block[i % 251 :] + block[: i % 251])  # vary blocks cheaply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", type=Path, help="hash this file instead of a generated one")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not shutil.which("sha256sum"):
        sys.exit("sha256sum not found")
    path = args.file or REPO / "bench" / "out" / f"hash_{args.size_mb}mb.bin"
    if not path.exists():
        make_file(path, args.size_mb)
    size_mb = path.stat().st_size / 1e6
    ours_hex = sha256_file(path)  # also warms the page cache
    theirs_hex = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    assert ours_hex == theirs_hex, (ours_hex, theirs_hex)
    ours, theirs = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        sha256_file(path)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(["sha256sum", str(path)], capture_output=True, check=True)
        theirs.append(time.perf_counter() - t)
    best_o, best_t = size_mb / min(ours), size_mb / min(theirs)
    print(f"file: {path} ({size_mb:,.0f} MB), {args.repeat} runs each, page cache warm")
    print(f"sha256_file: best {best_o:,.0f} MB/s, median {size_mb / statistics.median(ours):,.0f} MB/s")
    print(f"sha256sum:   best {best_t:,.0f} MB/s, median {size_mb / statistics.median(theirs):,.0f} MB/s")
    print(f"ratio (best): {best_o / best_t:.2f}x   (goal >= 0.90x)")
    if not args.file and not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
