#!/usr/bin/env bash
# The Verifily Train demo, offline on CPU: fine-tune all-MiniLM-L6-v2 (embedded, no download) with LoRA on ds_demo v1
# and v2 (the same 1,000 human rows; FewGen vs SuperGen synthetic rows), evaluate both per `source` slice, compare
# them (table + chart), show where the models fail, verify the hash chain, and train v2 again to show the run cache.
#
#   ./demo.sh                              first sets up ./.venv (scripts/setup.sh), then runs the demo
#   VERIFILY=/path/to/verifily ./demo.sh   use an installed CLI instead (no set-up)
#   DEMO_CONFIG=my.yaml ./demo.sh          another config (e.g. with training.max_steps, for a quick smoke test)
#   DEMO_OUT=/tmp/demo ./demo.sh           another output folder (default runs/demo)
#
# Runs go to runs/demo/ (gitignored; emptied at the start, so the first trainings really train), the chart to
# runs/demo/compare.png.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${VERIFILY:-}" ]; then
  bash scripts/setup.sh
  VERIFILY=${VENV:-.venv}/bin/verifily
fi
PY=$(dirname "$VERIFILY")/python
CONFIG=${DEMO_CONFIG:-examples/train.yaml}
OUT=${DEMO_OUT:-runs/demo}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 VERIFILY_DATASETS=examples/datasets
rm -rf "$OUT"
mkdir -p "$OUT"
[ -t 1 ] || export COLUMNS=${COLUMNS:-120} # piped or logged: wide enough that tables and paths are not cut

if [ -t 1 ]; then B=$'\033[1m' D=$'\033[2m' N=$'\033[0m'; else B='' D='' N=''; fi
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started))s"; }
show() { printf '\n%s$ verifily %s%s  %s[%s]%s\n' "$B" "$*" "$N" "$D" "$(elapsed)" "$N"; }
v() { show "$*"; "$VERIFILY" "$@"; }

v dataset diff ds_demo@v1 ds_demo@v2

# `train` reports progress on stderr and prints the run folder on stdout.
show "train --config $CONFIG --dataset ds_demo@v1 --output-dir $OUT"
V1=$("$VERIFILY" train --config "$CONFIG" --dataset ds_demo@v1 --output-dir "$OUT")
echo "$V1"
show "train --config $CONFIG --dataset ds_demo@v2 --output-dir $OUT"
V2=$("$VERIFILY" train --config "$CONFIG" --dataset ds_demo@v2 --output-dir "$OUT")
echo "$V2"

# Both models on the same eval split (v2's; the file is identical in v1), so compare pairs them example by example.
v eval --run "$V1" --dataset ds_demo@v2 --slice-by source
v eval --run "$V2" --dataset ds_demo@v2 --slice-by source
v compare --runs "$V1,$V2" --slice-by "source,source×origin" --metric macro_f1 --discover --chart "$OUT/compare.png" --output "$OUT/compare.md"

# The hard examples eval wrote: where v2 fails, by tag, and its worst examples.
printf '\n%s$ hard examples of %s%s\n' "$B" "$V2" "$N"
"$PY" - "$V2" <<'EOF'
import json, pathlib, sys
(ev,) = pathlib.Path(sys.argv[1], "eval").iterdir()
results = json.loads((ev / "eval_results.json").read_text())
for entry in results["failure_breakdown"]:
    print(f"  {entry['sentence']}")
print(f"  worst examples ({ev.name}/hard_examples.jsonl):")
for line in (ev / "hard_examples.jsonl").read_text().splitlines()[:5]:
    ex = json.loads(line)
    text = ex["input"] if len(ex["input"]) <= 60 else ex["input"][:57] + "..."
    print(f"  {ex['rank']}. {ex['id']:<14} true {ex['reference']:<8} predicted {ex['prediction']:<8} {text!r}")
EOF

v reproduce --verify-only "$V2"

show "train --config $CONFIG --dataset ds_demo@v2 --output-dir $OUT    # same data, same config: the run cache answers"
t0=$(date +%s)
"$VERIFILY" train --config "$CONFIG" --dataset ds_demo@v2 --output-dir "$OUT"
echo "(answered in $(($(date +%s) - t0))s)"

printf '\n%sdemo finished in %s%s: runs in %s/, chart %s/compare.png\n' "$B" "$(elapsed)" "$N" "$OUT" "$OUT"
