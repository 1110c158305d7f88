"""Where training runs and in which precision: cuda > mps > cpu; `auto` precision is bf16 where the GPU supports
it, else fp16 on CUDA, else fp32."""

from __future__ import annotations

from ..errors import VerifilyError


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16 | fp16 | fp32 for `device`; an explicit choice the device cannot run is a user error."""
    import torch

    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        if device == "cuda":
            return "bf16" if bf16_ok else "fp16"
        return "fp32"  # mps/cpu: mixed precision there is slower or unsupported by the Trainer
    if precision == "fp16" and device != "cuda":
        raise VerifilyError(
            f"training.precision fp16 needs CUDA; this machine trains on {device}",
            hint="use precision: auto (fp32 here) or bf16",
        )
    if precision == "bf16" and device == "cuda" and not bf16_ok:
        raise VerifilyError("training.precision bf16 is not supported by this GPU", hint="use precision: auto (fp16)")
    return precision
