#!/bin/sh
# Create /opt/venv and install the hash-pinned lock file given as $1 (`pip install --require-hashes`).
# When the build context carries a wheelhouse (docker/wheelhouse/*.whl, made by docker/wheelhouse.sh), install from
# it only, without any index: the build then needs no network and no CA bundle. Otherwise pip uses its indexes
# (PyPI, plus the index lines written at the top of the lock file).
set -eu
lock=$1
here=$(dirname "$0")
wheelhouse=$here/wheelhouse
python3 -m venv /opt/venv
if [ ! -f "$lock" ]; then
  # No committed lock for this target (the cuda one is made where PyPI's CUDA wheels are reachable): resolve it now,
  # pinned to the versions of the committed cpu lock, with the sha256 PyPI serves. Commit the file that
  # `python docker/lock.py <target> --versions-from docker/requirements-cpu.lock` writes to pin it ahead of builds.
  target=$(basename "$lock" .lock)
  target=${target#requirements-}
  echo "install-deps: $(basename "$lock") is not in the build context; resolving it with docker/lock.py"
  /opt/venv/bin/python "$here/lock.py" "$target" --versions-from "$here/requirements-cpu.lock" --output "$lock"
fi
set --
if ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$wheelhouse"
  echo "install-deps: installing from the wheelhouse only ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"
fi
/opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
  "$@" -r "$lock"
