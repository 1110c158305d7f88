"""What this runner has, as the server meters it: the CUDA devices torch sees, else none ("cpu"). A machine without
an NVIDIA driver has none, which is known without loading torch (2 s of a runner's start-up)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

NVIDIA_DRIVER = Path("/proc/driver/nvidia")  # present on a host with the driver and in a container given its GPUs


def detect() -> dict[str, Any]:
    if not NVIDIA_DRIVER.exists() and shutil.which("nvidia-smi") is None:
        return {"gpus": 0, "kind": "cpu"}
    import torch

    if torch.cuda.is_available():
        return {"gpus": int(torch.cuda.device_count()), "kind": "cuda"}
    return {"gpus": 0, "kind": "cpu"}
