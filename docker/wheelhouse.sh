#!/usr/bin/env bash
# Download every wheel of docker/requirements-<target>.lock into docker/wheelhouse/ (gitignored; part of the build
# context), so `docker build` installs without network access. Hashes are checked by pip against the lock.
# Fast when warm: skips pip when every locked file is already there; removes wheels the lock no longer names.
# Usage: docker/wheelhouse.sh [cpu|cuda]      (pip's own config decides where wheels come from)
set -euo pipefail
cd "$(dirname "$0")"
target=${1:-cpu}
lock="requirements-$target.lock"
PY=${PYTHON:-python3}
mkdir -p wheelhouse
# the file names the lock records (one `# <file>` comment per package)
mapfile -t files < <(sed -n 's/.*--hash=sha256:[0-9a-f]*  # \(.*\.whl\)$/\1/p' "$lock")
missing=0
for f in "${files[@]}"; do [ -f "wheelhouse/$f" ] || missing=$((missing + 1)); done
if [ "$missing" -gt 0 ]; then
  echo "wheelhouse: downloading $missing of ${#files[@]} wheels for $lock" >&2
  # index lines (e.g. download.pytorch.org) are left out: pip's config says where this machine finds wheels
  reqs=$(mktemp); trap 'rm -f "$reqs"' EXIT
  grep -v '^--' "$lock" >"$reqs"
  "$PY" -m pip download -q --no-deps --require-hashes --only-binary=:all: -d wheelhouse -r "$reqs"
fi
keep=" ${files[*]} "
for w in wheelhouse/*.whl; do
  [ -e "$w" ] || continue
  case "$keep" in *" $(basename "$w") "*) ;; *) echo "wheelhouse: removing stale $(basename "$w")" >&2; rm -f "$w" ;; esac
done
echo "wheelhouse: ${#files[@]} wheels for $lock in docker/wheelhouse" >&2
