#!/bin/sh
# Create /opt/venv and install the hash-pinned lock file given as $1 into it (`pip install --require-hashes --no-deps`:
# the lock is the whole closure), then slim it down. The image carries no installer: /opt/venv is made without pip,
# and pip runs from a build-only venv, /opt/build (ensurepip's pip, plus setuptools pinned by the cpu lock to build
# the package in the app stage), which the final stage never copies.
# When the build context carries a wheelhouse (docker/wheelhouse/*.whl, made by docker/wheelhouse.sh), install from
# it only, without any index: the build then needs no network and no CA bundle. Otherwise pip uses its indexes
# (PyPI, plus the index lines written at the top of the lock file).
set -eu
lock=$1
here=$(dirname "$0")
wheelhouse=$here/wheelhouse
python3 -m venv /opt/build
python3 -m venv --without-pip /opt/venv
if [ ! -f "$lock" ]; then
  # No committed lock for this target (the cuda one is made where PyPI's CUDA wheels are reachable): resolve it now,
  # pinned to the versions of the committed cpu lock, with the sha256 PyPI serves. Commit the file that
  # `python docker/lock.py <target> --versions-from docker/requirements-cpu.lock` writes to pin it ahead of builds.
  target=$(basename "$lock" .lock)
  target=${target#requirements-}
  echo "install-deps: $(basename "$lock") is not in the build context; resolving it with docker/lock.py"
  /opt/build/bin/python "$here/lock.py" "$target" --versions-from "$here/requirements-cpu.lock" --output "$lock"
fi
set --
if ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$wheelhouse"
  echo "install-deps: installing from the wheelhouse only ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"
fi
pip() { /opt/build/bin/python -m pip --disable-pip-version-check "$@"; }
# --no-compile: bytecode only for what a run imports (below), not for every module of every package
pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
  --no-compile "$@" -r "$lock"
# setuptools is in the cpu and cuda locks as a dependency of torch (for compiling C++ extensions, which no run does):
# it builds the package in the app stage from /opt/build (below) and stays out of the image
pip --python /opt/venv/bin/python uninstall --yes --quiet setuptools
# the build backend for the app stage (pyproject.toml's build-system), in the build venv only
grep -A1 '^setuptools==' "$here/requirements-cpu.lock" >/tmp/build-requirements.txt
pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: "$@" -r /tmp/build-requirements.txt
rm /tmp/build-requirements.txt

# Nothing at run time reads tests, C/C++ headers or Cython sources; bytecode is remade below for what runs.
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
rm -rf "$site/torch/include" "$site/pyarrow/include" "$site/pyarrow/src"
# torch's C++ test programs and protoc (torch_shm_manager stays: DataLoader workers share memory through it); pyarrow's
# Flight RPC, S3 filesystem and C++ tests, which only their own modules link (pyarrow.fs imports S3 optionally)
rm -rf "$site/torch/test"
if [ -d "$site/torch/bin" ]; then find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +; fi
rm -f "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* "$site"/pyarrow/_flight.*.so \
  "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_s3fs.*.so "$site"/pyarrow/_pyarrow_cpp_tests.*.so
find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete
# Byte-compile the modules a run imports (train, eval, compare, the Action), so a container start does not compile
# them each time (the images set PYTHONDONTWRITEBYTECODE); a module this target does not ship is skipped.
/opt/venv/bin/python - <<'PY'
import importlib

for name in (
    "numpy", "yaml", "jsonschema", "requests", "typer", "rich.console", "rich.table", "click",
    "cryptography.hazmat.primitives.asymmetric.ed25519", "cryptography.hazmat.primitives.serialization",
    "torch", "safetensors", "accelerate", "datasets", "pyarrow", "pandas", "peft", "huggingface_hub", "tokenizers",
    "transformers", "transformers.trainer", "transformers.training_args", "transformers.data.data_collator",
    "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert", "transformers.models.llama.modeling_llama",
    "transformers.models.t5.modeling_t5", "matplotlib.pyplot",
):
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not in this target's lock (the comment image has no torch)
        pass
PY
echo "install-deps: /opt/venv is $(du -sm /opt/venv | cut -f1) MB"
