"""Build the preference dataset `alpaca_pref` (v1) for `task: dpo` from AlpacaEval's outputs in ../shared/data.

    python examples/datasets/make_preference.py [SHARED_DATA_DIR] [--out DATASETS_ROOT]
    # defaults: <repo>/../shared/data, examples/datasets

Reads preference/alpaca_eval/gpt4_model_outputs.json and text_davinci_003_model_outputs.json (805 rows each, the
same instructions in the same order) and writes examples/datasets/alpaca_pref/v1/ (manifest.yaml, train.jsonl,
eval.jsonl, LICENSE) with each file's sha256 and row count. Deterministic: rerunning it reproduces the files.

The preference rule: for every instruction, `chosen` is GPT-4's output and `rejected` is text-davinci-003's
(AlpacaEval's judges preferred the GPT-4 outputs in most rows; it is a rule, not a per-row judgement). `prompt` is
the instruction, `tags: {dataset: <AlpacaEval source set>}` (selfinstruct, oasst, koala, helpful_base, vicuna).
Row i of the arrays is `alpaca-<i:03d>`; every 4th row (i % 4 == 0, 202 rows) is the eval split, the other 603 train.
Texts are copied verbatim: the 10 rows where both models wrote the same output are kept (task dpo counts them and
leaves them out), as are the 2 rows where text-davinci-003's output is empty (the data checks note them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAME, VERSION = "alpaca_pref", "v1"
CHOSEN, REJECTED = "gpt4_model_outputs.json", "text_davinci_003_model_outputs.json"
EVAL_EVERY = 4
DESCRIPTION = (
    "Preference pairs for task dpo from the AlpacaEval evaluation set (805 instructions): chosen = GPT-4's output, "
    "rejected = text-davinci-003's output for the same instruction (the rule AlpacaEval's judges agreed with in most "
    "rows); prompt = the instruction; tags.dataset = its AlpacaEval source set. Eval = every 4th row (202), train = "
    "the other 603. Built by examples/datasets/make_preference.py."
)
PROVENANCE = (
    "tatsu-lab/alpaca_eval (AlpacaEval evaluation set; model outputs of gpt4 and text_davinci_003), as shipped in "
    "../shared/data/preference/alpaca_eval; texts verbatim. See examples/datasets/README.md."
)


def build_rows(chosen: list[dict], rejected: list[dict]) -> list[dict]:
    if len(chosen) != len(rejected):
        raise SystemExit(f"the two files hold {len(chosen)} and {len(rejected)} rows; they must pair row by row")
    rows = []
    for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
        if c["instruction"] != r["instruction"] or c["dataset"] != r["dataset"]:
            raise SystemExit(f"row {i}: the two files differ in instruction or dataset; they must pair row by row")
        rows.append(
            {
                "id": f"alpaca-{i:03d}",
                "prompt": c["instruction"],
                "chosen": c["output"],
                "rejected": r["output"],
                "tags": {"dataset": c["dataset"]},
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> dict:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(data)
    return {"files": [{"path": path.name, "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows)}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared_data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(HERE), help="the datasets root to write alpaca_pref/v1 under")
    args = parser.parse_args(argv)
    src = Path(args.shared_data) / "preference" / "alpaca_eval"
    rows = build_rows(*(json.loads((src / f).read_text(encoding="utf-8")) for f in (CHOSEN, REJECTED)))
    out = Path(args.out) / NAME / VERSION
    out.mkdir(parents=True, exist_ok=True)
    splits = {
        "train": write_jsonl(out / "train.jsonl", [r for i, r in enumerate(rows) if i % EVAL_EVERY]),
        "eval": write_jsonl(out / "eval.jsonl", [r for i, r in enumerate(rows) if i % EVAL_EVERY == 0]),
    }
    shutil.copyfile(src / "LICENSE", out / "LICENSE")
    manifest = {
        "schema_version": 1,
        "name": NAME,
        "version": VERSION,
        "description": DESCRIPTION,
        "task": "dpo",
        "fields": {"id": "id", "prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "tags": "tags"},
        "tag_keys": ["dataset"],
        "splits": splits,
        "provenance": PROVENANCE,
        "license": "Apache-2.0",
    }
    import yaml

    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=120)
    (out / "manifest.yaml").write_text(text, encoding="utf-8")
    print(f"wrote {out}: train {splits['train']['files'][0]['rows']} rows, eval {splits['eval']['files'][0]['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
