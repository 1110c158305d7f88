#!/bin/sh
# Build the verifily package from the source tree $1 into a wheel and install it, without its dependencies (the lock
# installed them), for /opt/venv under the root folder $2: the final stage copies $2 over / in a small layer of its
# own. pip and setuptools come from the build venv (/opt/build, install-deps.sh), so no index is needed.
set -eu
src=$1
root=$2
/opt/build/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check --no-index --no-deps \
  --no-build-isolation --wheel-dir /tmp/app-wheel "$src"
/opt/build/bin/python -m pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
  --no-index --no-deps --root "$root" /tmp/app-wheel/*.whl
rm -rf /tmp/app-wheel
