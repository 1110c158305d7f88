#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up .venv, install the test fixtures, lint, type-check, run every test tier
# this machine can run (unit, integration, container; gpu tests skip without CUDA). Extra args go to pytest.
# Everything it starts (dockerd for the container tests) is stopped by the tests' session fixtures and the trap below.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
# If the run dies before pytest's session fixture can stop the container tier's engine, stop it here (only an engine
# this run started: one that was already running before is left alone).
DOCKER_STATE=${VERIFILY_DOCKER_DIR:-/var/lib/verifily-docker}
if ! { [ -f "$DOCKER_STATE/dockerd.pid" ] && kill -0 "$(cat "$DOCKER_STATE/dockerd.pid")" 2>/dev/null; }; then
  trap 'bash tests/container/stop_dockerd.sh >/dev/null 2>&1 || true' EXIT
fi
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
"$PY" -m pytest --durations=15 "$@"  # the slowest tests, in every CI log
