"""Wall time and peak RSS of verifying + loading an N-row JSONL split with `load_split`; run by hand.

    python bench/load_rows.py [--rows 200000 1000000]

Goal (issue 3): peak RSS does not grow with the file beyond Arrow's memory map. Each size runs in a fresh child
process (so peak RSS is its own: `ru_maxrss` of the child) with an empty datasets cache: a cold load = hash the
file, parse and validate every row, write the Arrow cache file, memory-map it, then touch every row once. A second
(warm) load of the same content comes from the cache. `check_data` (duplicates, leakage) is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from verifily_action.datasets import load_manifest, load_split, check_data
m = load_manifest(sys.argv[2])
out = {}
def rss():  # resident memory now, split into anonymous (heap) and file-backed (the Arrow memory map, libraries)
    f = dict(ln.split(":", 1) for ln in open("/proc/self/status"))
    return {k: int(f[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}
t, c = time.perf_counter(), time.process_time(); ds = load_split(m, "train")
out["cold_load_s"], out["cold_cpu_s"] = time.perf_counter() - t, time.process_time() - c
out["rss_after_load"] = rss()
t = time.perf_counter(); n = sum(len(b["text"]) for b in ds.iter(batch_size=10000))
out["scan_s"] = time.perf_counter() - t
out["rss_after_scan"] = rss()
t = time.perf_counter(); ds2 = load_split(m, "train"); out["warm_load_s"] = time.perf_counter() - t
out["rows"] = ds.num_rows
out["peak_rss_load_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter(); r = check_data(m); out["check_data_s"] = time.perf_counter() - t
out["peak_rss_all_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""

BASE = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
import datasets, numpy, verifily_action.datasets
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def write_dataset(folder: Path, rows: int) -> Path:
    sys.path.insert(0, str(REPO))
    from verifily_action.hashing import sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "train.jsonl"
    origins = ("imdb", "amazon", "yelp", "fewgen")
    with open(data, "w", encoding="utf-8") as f:
        for i in range(rows):
            o = origins[i % 4]
            text = f"row {i}: a sentence of ordinary length about a film that was {'good' if i % 2 else 'bad'}, really."
            r = {
                "id": f"{o}-{i:07d}",
                "text": text,
                "label": "positive" if i % 2 else "negative",
                "tags": {"source": "synthetic" if o == "fewgen" else "human", "origin": o},
            }
            f.write(json.dumps(r) + "\n")
    manifest = {
        "schema_version": 1,
        "name": "bench",
        "version": f"n{rows}",
        "task": "classification",
        "fields": {"id": "id", "text": "text", "label": "label", "tags": "tags"},
        "tag_keys": ["source", "origin"],
        "splits": {"train": {"files": [{"path": "train.jsonl", "sha256": sha256_file(data), "rows": rows}]}},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    args = ap.parse_args()
    (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "bench" / "out") as tmp:
        env = dict(os.environ, HF_DATASETS_CACHE=str(Path(tmp) / "cache"), HF_DATASETS_OFFLINE="1")
        base = subprocess.run([sys.executable, "-c", BASE, str(REPO)], capture_output=True, text=True, env=env)
        print(f"baseline peak RSS after importing datasets+numpy+verifily: {float(base.stdout):.0f} MB")
        for n in args.rows:
            manifest = write_dataset(Path(tmp) / f"n{n}", n)
            size = (manifest.parent / "train.jsonl").stat().st_size / 1e6
            r = subprocess.run(
                [sys.executable, "-c", CHILD, str(REPO), str(manifest)], capture_output=True, text=True, env=env
            )
            if r.returncode:
                sys.exit(r.stderr)
            d = json.loads(r.stdout.strip().splitlines()[-1])
            print(
                f"{n:>9,} rows ({size:,.0f} MB JSONL): cold load {d['cold_load_s']:.1f} s "
                f"(CPU {d['cold_cpu_s']:.1f} s, {n / d['cold_cpu_s']:,.0f} rows/CPU-s), "
                f"full scan {d['scan_s']:.1f} s, warm load "
                f"{d['warm_load_s']:.2f} s, peak RSS {d['peak_rss_load_mb']:.0f} MB; check_data "
                f"{d['check_data_s']:.1f} s, peak RSS with checks {d['peak_rss_all_mb']:.0f} MB"
            )
            for when in ("after_load", "after_scan"):
                r_ = d[f"rss_{when}"]
                print(
                    f"    RSS {when.replace('_', ' ')}: anonymous {r_['RssAnon']:.0f} MB, "
                    f"file-backed {r_['RssFile']:.0f} MB"
                )


if __name__ == "__main__":
    main()
