"""Training: the job (plan -> Trainer + PEFT LoRA -> run folder), per-task data, models, LoRA/QLoRA, device, logs.

Import-light on purpose: `format_prompt` (shared with eval) needs no torch; the job modules import heavy libraries
inside their functions. Entry point: `verifily_action.train.job.train(TrainOptions(...))`.
"""

from __future__ import annotations

from .data import SFT_TEMPLATE, format_prompt

__all__ = ["SFT_TEMPLATE", "format_prompt"]
