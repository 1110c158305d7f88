#!/usr/bin/env bash
# The Verifily Train demo, offline on 2 CPU cores: train on ds_demo v1 and v2 (same human rows, FewGen vs SuperGen
# synthetic rows), evaluate both per `source` slice, compare them, show the hard examples, verify the hash chain,
# and train v2 again to show the run cache answering in seconds.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
V=.venv/bin/verifily
OUT=${DEMO_OUT:-runs/demo}
export VERIFILY_DATASETS=examples/datasets
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
start=$(date +%s)

step $V validate examples/train.yaml
step $V dataset info ds_demo@v2
step $V dataset diff ds_demo@v1 ds_demo@v2
step $V train --config examples/train.yaml --dataset ds_demo@v1 --output-dir "$OUT"
step $V train --config examples/train.yaml --dataset ds_demo@v2 --output-dir "$OUT"
V1=$(ls -d "$OUT"/ds_demo-v1-* | head -1)
V2=$(ls -d "$OUT"/ds_demo-v2-* | head -1)
step $V eval --run "$V1" --slice-by source
step $V eval --run "$V2" --slice-by source
step $V compare --runs "$V1,$V2" --slice-by source --chart "$OUT/compare.png"
step head -n 3 "$V2"/eval/*/hard_examples.jsonl
step $V reproduce --verify-only "$V2"
step $V train --config examples/train.yaml --dataset ds_demo@v2 --output-dir "$OUT"
printf '\ndemo finished in %ss\n' "$(( $(date +%s) - start ))"
