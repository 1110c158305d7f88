#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up .venv, install the test fixtures, lint, type-check, run every test tier
# this machine can run (unit, integration, container; gpu tests skip without CUDA). Extra args go to pytest.
# Everything it starts (dockerd for the container tests) is stopped by the tests' session fixtures and the trap below.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
for hook in tests/npm_fixtures.sh; do
  if [ -f "$hook" ]; then bash "$hook" >/dev/null; fi
done
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy verifily_action
echo "== pytest"
"$PY" -m pytest "$@"
