"""Warn before training when the config needs CUDA and the container sees no GPU.

A container action gets no `--gpus` flag from the runner, so on a self-hosted GPU runner the GPU is only visible when
Docker's default runtime is NVIDIA's and `NVIDIA_VISIBLE_DEVICES` selects devices (see README.md). Without
this check a QLoRA config would fail deep inside bitsandbytes, or a bf16 run would silently fall back to fp32 on CPU.

Cheap on purpose: it reads the config as plain YAML and looks for NVIDIA device files instead of importing torch
(the entrypoint calls it before anything heavy is loaded). Nothing here raises: a config it cannot read gets no
warning, because validation reports that config's problems properly.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

# config values that only work (quantization) or only make sense (half precision) on CUDA
CUDA_QUANTIZATION = ("4bit", "8bit")
CUDA_PRECISION = ("bf16", "fp16")
SETUP_DOC = "README.md, section 'Self-hosted GPU runners'"


def cuda_reasons(config: Mapping[str, Any]) -> list[str]:
    """Which settings of a config (a parsed train.yaml) want CUDA, as `key: value` strings; empty when none do."""
    reasons = []
    quantization = config.get("quantization")
    if quantization in CUDA_QUANTIZATION:
        reasons.append(f"quantization: {quantization}")
    training = config.get("training")
    precision = training.get("precision") if isinstance(training, Mapping) else None
    if precision in CUDA_PRECISION:
        reasons.append(f"training.precision: {precision}")
    return reasons


def cuda_visible(dev: str = "/dev") -> bool:
    """True when an NVIDIA GPU is visible: the runtime mounts /dev/nvidiactl and one /dev/nvidiaN per device."""
    if os.environ.get("NVIDIA_VISIBLE_DEVICES", "").strip() in ("none", "void"):
        return False
    torch = sys.modules.get("torch")  # already imported (not in the entrypoint): ask it, it knows best
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001 - a broken CUDA setup means "not visible"
            return False
    return os.path.exists(os.path.join(dev, "nvidiactl")) and bool(glob.glob(os.path.join(dev, "nvidia[0-9]*")))


def gpu_warning(config: Mapping[str, Any], visible: bool | None = None) -> str | None:
    """The warning text when the config wants CUDA and none is visible, else None."""
    reasons = cuda_reasons(config)
    if not reasons or (cuda_visible() if visible is None else visible):
        return None
    env = os.environ.get("NVIDIA_VISIBLE_DEVICES")
    seen = f"NVIDIA_VISIBLE_DEVICES={env!r}" if env is not None else "NVIDIA_VISIBLE_DEVICES is not set"
    return (
        f"the config wants CUDA ({', '.join(reasons)}) but no NVIDIA GPU is visible in this container ({seen}). "
        "4bit/8bit quantization will fail and bf16/fp16 cannot run on CPU. On a self-hosted runner, make NVIDIA's "
        f"runtime Docker's default and set NVIDIA_VISIBLE_DEVICES (see {SETUP_DOC}); with `docker run`, pass "
        "--gpus all; on a CPU-only runner, use quantization: none and training.precision: auto or fp32."
    )


def load_config_mapping(path: str | Path) -> Mapping[str, Any]:
    """The config file as a plain mapping, or {} when it is missing or not a YAML mapping."""
    from ..errors import VerifilyError
    from ..yamlsource import load_yaml

    try:
        data = load_yaml(path, "config")
    except (VerifilyError, OSError):  # validation reports unreadable configs with file and line
        return {}
    return data if isinstance(data, Mapping) else {}


def warn_if_no_gpu(config_path: str | Path, stream: TextIO | None = None, github: bool | None = None) -> str | None:
    """Print the warning for the config at `config_path` (a `::warning` annotation inside GitHub Actions); return it."""
    message = gpu_warning(load_config_mapping(config_path))
    if message is None:
        return None
    out = stream or sys.stderr
    in_actions = os.environ.get("GITHUB_ACTIONS") == "true" if github is None else github
    if in_actions:
        # workflow command: shows as an annotation on the run; %, CR and LF must be escaped in the message
        text = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::warning file={config_path},title=No GPU visible::{text}", file=out)
    else:
        print(f"warning: {message}", file=out)
    out.flush()
    return message


def _config_from_argv(argv: list[str]) -> str | None:
    """The --config value of a CLI invocation (`train --config X`, `--config=X`, `-c X`), if any."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def check_cli_args(argv: list[str], stream: TextIO | None = None) -> str | None:
    """The entrypoint's check for `docker run IMAGE train --config X`: warn for `train` invocations only."""
    if not argv or argv[0] != "train":
        return None
    path = _config_from_argv(argv[1:])
    return warn_if_no_gpu(path, stream=stream) if path else None


def check_action_env(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> str | None:
    """The entrypoint's check for the Action's flow: the config named by the inputs, under the workspace."""
    env = os.environ if env is None else env

    def get(name: str, default: str) -> str:
        return env.get(f"INPUT_{name.upper()}", "").strip() or default

    workspace = Path(env.get("GITHUB_WORKSPACE") or "/github/workspace")
    return warn_if_no_gpu(workspace / get("working-directory", ".") / get("config", "train.yaml"), stream=stream)
