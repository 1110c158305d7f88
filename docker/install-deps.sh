#!/bin/sh
# Create /opt/venv and install the hash-pinned lock file given as $1 (`pip install --require-hashes`).
# When the build context carries a wheelhouse (docker/wheelhouse/*.whl, made by docker/wheelhouse.sh), install from
# it only, without any index: the build then needs no network and no CA bundle. Otherwise pip uses its indexes
# (PyPI, plus the index lines written at the top of the lock file).
set -eu
lock=$1
wheelhouse=$(dirname "$0")/wheelhouse
python3 -m venv /opt/venv
set --
if ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$wheelhouse"
  echo "install-deps: installing from the wheelhouse only ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"
fi
/opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
  "$@" -r "$lock"
