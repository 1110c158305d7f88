"""Adapter snapshots kept in the run (`training.snapshots`): the checkpoints TracIn sums over.

A run keeps `training.snapshots` adapters evenly spaced over its optimizer steps, the last being the final adapter
(adapter/); the others go to snapshots/step-<n>/ (the adapter's weights, config and label map only, no optimizer
state, so a snapshot of a LoRA adapter is as small as the adapter). A snapshot is written under a scratch name and
renamed, so a kill leaves it whole or absent; a resumed run drops the snapshots after its checkpoint (the steps are
trained again) and writes them again. The train log has a line at every snapshot step, so the learning rate of each
snapshot's interval can be read back exactly (TracIn, `verifily attribute --method tracin`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..runs import layout
from ..runs.files import write_json_atomic


def planned_steps(count: int, max_steps: int) -> list[int]:
    """The optimizer steps at which to keep a snapshot, the final step (the adapter itself) left out."""
    if count <= 1 or max_steps <= 1:
        return []
    return sorted({round(k * max_steps / count) for k in range(1, count)} - {0, max_steps})


class SnapshotCallback(TrainerCallback):
    """Saves the adapter at `planned_steps(count, max_steps)` into `run_dir/snapshots/`."""

    def __init__(self, count: int, run_dir: Path, label_map: dict[str, int] | None = None):
        self.count = count
        self.label_map = label_map
        self.root = run_dir / layout.SNAPSHOTS
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = set(planned_steps(self.count, state.max_steps))
        if self.root.is_dir():  # a resumed run: what lies after its checkpoint is trained (and saved) again
            for d in list(self.root.iterdir()):
                step = d.name[len(layout.SNAPSHOT_PREFIX) :]
                if not (d.name.startswith(layout.SNAPSHOT_PREFIX) and step.isdigit()) or int(step) > state.global_step:
                    shutil.rmtree(d, ignore_errors=True)

    def on_step_end(self, args, state, control, model: Any = None, **kwargs):
        if state.global_step in self.steps:
            control.should_log = True  # a train_log line closes the snapshot's interval
            self.save(model, state.global_step)
        return control

    def save(self, model: Any, step: int) -> None:
        final = self.root / f"{layout.SNAPSHOT_PREFIX}{step:06d}"
        scratch = self.root / f".{final.name}{layout.TEMP_SUFFIX}"
        shutil.rmtree(scratch, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(scratch), safe_serialization=True)
        for extra in scratch.iterdir():  # the weights and their config: no model card
            if extra.name not in (layout.ADAPTER_WEIGHTS_FILE, layout.ADAPTER_CONFIG_FILE):
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        if self.label_map:  # a classifier's adapter loads with its labels (evaluate.inference), as adapter/ does
            write_json_atomic(scratch / layout.LABEL_MAP, {"label2id": self.label_map})
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
