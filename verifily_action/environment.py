"""What a run ran on, written to `environment.json` (hashed into the run's chain) so a result can be reproduced.

Records python, the ML libraries' versions, CUDA and the GPUs, the CPU, the OS and the git commit of the working
tree (with a dirty flag) when there is one. Versions come from package metadata, so nothing heavy is imported just
to ask; torch is asked about CUDA only when it is already loaded or importable.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets", "tokenizers", "safetensors")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """Commit and dirty flag of the git working tree around `cwd` (None outside a repository or without git)."""
    where = Path(cwd or os.getcwd())
    commit = _git(where, "rev-parse", "HEAD")
    if not commit:
        return None
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def _cuda() -> dict[str, Any]:
    info: dict[str, Any] = {"available": False, "version": None, "gpu_count": 0, "gpu_names": []}
    try:
        import torch
    except ImportError:
        return info
    info["version"] = torch.version.cuda
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        info.update(available=True, gpu_count=n, gpu_names=[torch.cuda.get_device_name(i) for i in range(n)])
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps is not None and mps.is_available())
    return info


def _cpu() -> dict[str, Any]:
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "count": os.cpu_count(), "usable": usable, "machine": platform.machine()}


def collect(cwd: str | Path | None = None) -> dict[str, Any]:
    """The environment document (schema_version 1)."""
    return {
        "schema_version": 1,
        "verifily_version": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "packages": {name: _version(name) for name in PACKAGES},
        "cuda": _cuda(),
        "cpu": _cpu(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "executable": sys.executable,
        "git": git_info(cwd),
    }
