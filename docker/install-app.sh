#!/bin/sh
# Install the verifily package from the source tree given as $1 into /opt/venv, without its dependencies (the lock
# file installed them) and without build isolation (setuptools comes from the lock), so no index is needed.
set -eu
/opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
  --no-build-isolation "$1"
/opt/venv/bin/verifily --version
