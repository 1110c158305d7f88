"""Build the demo dataset `ds_demo` (v1, v2) from the real sentiment data in ../shared/data.

    python examples/datasets/build_demo.py [SHARED_DATA_DIR]   # default: <repo>/../shared/data

Writes examples/datasets/ds_demo/{v1,v2}/ (manifest.yaml, train.jsonl, eval.jsonl) and hashes them. Deterministic
(fixed seed): rerunning it reproduces the committed files byte for byte.

- eval (the same file in both versions, so runs on v1 and v2 pair by id): 200 human rows from each UCI source
  (imdb, amazon, yelp) + 200 SST-2 dev rows (human), and 200 FewGen + 200 SuperGen rows (synthetic); every
  source balanced 100 negative / 100 positive.
- v1 train: 1,000 human UCI rows (disjoint from eval) + 1,000 FewGen rows.
- v2 train (parent v1): the same 1,000 human rows + 1,000 SuperGen rows.
No text (case- and whitespace-normalized) appears twice anywhere, so the data checks come out clean.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEED = 20240501
LABELS = {"0": "negative", "1": "positive"}
UCI = {"imdb": "imdb_labelled.txt", "amazon": "amazon_cells_labelled.txt", "yelp": "yelp_labelled.txt"}
EVAL_PER_SOURCE = 200
TRAIN_HUMAN = {"imdb": 334, "amazon": 333, "yelp": 333}
TRAIN_SYNTHETIC = 1000

PROVENANCE = (
    "Built by examples/datasets/build_demo.py (seed {seed}) from: UCI Sentiment Labelled Sentences (Kotzias et al., "
    "KDD 2015; imdb/amazon/yelp, human); the SST-2 dev set (GLUE; human, eval only) as shipped in "
    "github.com/yumeng5/SuperGen; SuperGen synthetic SST-2 training data (Meng et al., NeurIPS 2022; HTML entities "
    "unescaped); FewGen synthetic SST-2 training data (Meng et al., ICML 2023). See examples/datasets/README.md."
)
LICENSE = "CC-BY-4.0 (UCI Sentiment Labelled Sentences) AND Apache-2.0 (SuperGen, FewGen); SST-2 via GLUE"


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def read_uci(data: Path, origin: str) -> list[dict]:
    rows = []
    raw = (data / "sentiment" / "uci_sentiment" / UCI[origin]).read_bytes().decode("utf-8")
    # split on "\n" only: str.splitlines() would also split inside texts that hold U+0085 or U+2028
    for i, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        text, label = line.rsplit("\t", 1)
        rows.append(_row(f"{origin}-{i:04d}", text, label.strip(), "human", origin))
    return rows


def read_sst2(data: Path) -> list[dict]:
    raw = (data / "sentiment" / "supergen_sst2" / "test.tsv").read_bytes().decode("utf-8")
    lines = [line.rstrip("\r") for line in raw.split("\n") if line.strip()]
    assert lines[0].split("\t") == ["sentence", "label"], lines[0]
    return [_row(f"sst2-{i:04d}", *line.rsplit("\t", 1), "human", "sst2") for i, line in enumerate(lines[1:], 1)]


def read_generated(data: Path, origin: str) -> list[dict]:
    path = {
        "fewgen": data / "sentiment" / "fewgen_sst2" / "gen-train-seed42.json",
        "supergen": data / "sentiment" / "supergen_sst2" / "train.json",
    }[origin]
    items = json.loads(path.read_text(encoding="utf-8"))
    # SuperGen kept the HTML entities of its web-text prompts (&#34; for a quote); FewGen's text is plain
    fix = html.unescape if origin == "supergen" else (lambda t: t)
    return [
        _row(f"{origin}-{i:05d}", fix(x["text"]), str(x["label"]), "synthetic", origin) for i, x in enumerate(items)
    ]


def _row(row_id: str, text: str, label: str, source: str, origin: str) -> dict:
    return {"id": row_id, "text": text.strip(), "label": LABELS[label], "tags": {"source": source, "origin": origin}}


def pick(rows: list[dict], n: int, rng: random.Random, seen: set[str]) -> list[dict]:
    """n rows, half of each label, skipping texts already used (and empty ones); records the picked texts."""
    out = []
    for label in ("negative", "positive"):
        pool = [r for r in rows if r["label"] == label]
        rng.shuffle(pool)
        taken = 0
        for r in pool:
            key = norm(r["text"])
            if taken == n // 2 + (n % 2 if label == "negative" else 0):
                break
            if key and key not in seen:
                seen.add(key)
                out.append(r)
                taken += 1
    return sorted(out, key=lambda r: r["id"])


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def manifest(version: str, parent: str | None, description: str) -> dict:
    return {
        "schema_version": 1,
        "name": "ds_demo",
        "version": version,
        "parent": parent,
        "description": description,
        "task": "classification",
        "fields": {"id": "id", "text": "text", "label": "label", "tags": "tags"},
        "tag_keys": ["source", "origin"],
        "splits": {
            "train": {"files": [{"path": "train.jsonl", "sha256": None, "rows": None}]},
            "eval": {"files": [{"path": "eval.jsonl", "sha256": None, "rows": None}]},
        },
        "provenance": PROVENANCE.format(seed=SEED),
        "license": LICENSE,
    }


def build(data: Path, out: Path) -> None:
    import yaml

    sys.path.insert(0, str(REPO))
    from verifily_action.datasets import load_manifest
    from verifily_action.datasets.scaffold import hash_manifest

    rng = random.Random(SEED)
    seen: set[str] = set()
    uci = {o: read_uci(data, o) for o in UCI}
    gen = {o: read_generated(data, o) for o in ("fewgen", "supergen")}
    # eval first, from every source, so train rows can be kept disjoint from it by text
    eval_rows: list[dict] = []
    for o in UCI:
        eval_rows += pick(uci[o], EVAL_PER_SOURCE, rng, seen)
    eval_rows += pick(read_sst2(data), EVAL_PER_SOURCE, rng, seen)
    for o in ("fewgen", "supergen"):
        eval_rows += pick(gen[o], EVAL_PER_SOURCE, rng, seen)
    human: list[dict] = []
    for o, n in TRAIN_HUMAN.items():
        human += pick(uci[o], n, rng, seen)
    versions = {
        "v1": (None, "1,000 human (UCI) + 1,000 synthetic FewGen training rows", gen["fewgen"]),
        "v2": ("v1", "v1 with its FewGen rows replaced by 1,000 synthetic SuperGen rows", gen["supergen"]),
    }
    for version, (parent, description, synthetic) in versions.items():
        folder = out / "ds_demo" / version
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / "train.jsonl", human + pick(synthetic, TRAIN_SYNTHETIC, rng, seen))
        write_jsonl(folder / "eval.jsonl", eval_rows)
        text = "# yaml-language-server: $schema=../../../../schemas/dataset.schema.json\n"
        text += yaml.safe_dump(manifest(version, parent, description), sort_keys=False, width=120)
        (folder / "manifest.yaml").write_text(text, encoding="utf-8")
        m, _ = hash_manifest(load_manifest(folder / "manifest.yaml"))
        print(f"{m.ref}: {m.path} dataset hash {m.dataset_hash()[:16]}")
    licenses = out / "ds_demo" / "LICENSES"
    licenses.mkdir(exist_ok=True)
    shutil.copyfile(data / "sentiment" / "supergen_sst2" / "LICENSE", licenses / "SuperGen-LICENSE.txt")
    shutil.copyfile(data / "sentiment" / "fewgen_sst2" / "LICENSE", licenses / "FewGen-LICENSE.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    ap.add_argument("--out", default=str(HERE), help="where ds_demo/ is written (default: examples/datasets)")
    args = ap.parse_args()
    build(Path(args.data), Path(args.out))


if __name__ == "__main__":
    main()
