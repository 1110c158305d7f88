"""Experiment trackers (`report_to`): where they write (the run folder's logs/, `layout.LOGS`) and closing them.

They are closed before the run is sealed, and logs/ is hashed with the rest of the run, so nothing a tracker wrote
is outside the chain and nothing is written into the run after its seal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..runs.layout import LOGS


@contextmanager
def env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration (only those the user has not set)."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if old[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, prev in old.items():
            if prev is None:
                os.environ.pop(k, None)


def tracker_env(cfg: Any, run_dir: Path) -> dict[str, str]:
    logs = run_dir / LOGS
    if cfg.report_to == "tensorboard":
        return {"TENSORBOARD_LOGGING_DIR": str(logs / "tensorboard")}
    if cfg.report_to == "wandb":
        return {"WANDB_DIR": str(logs), "WANDB_PROJECT": "verifily"}
    if cfg.report_to == "mlflow":
        # MLflow 3 refuses a file store (./mlruns) unless MLFLOW_ALLOW_FILE_STORE opts in; a database backend
        # would need SQLAlchemy, which mlflow-skinny leaves out. The opt-in does nothing for a tracking server.
        return {
            "MLFLOW_TRACKING_URI": (logs / "mlruns").resolve().as_uri(),
            "MLFLOW_EXPERIMENT_NAME": "verifily",
            "MLFLOW_ALLOW_FILE_STORE": "true",
        }
    return {}


def close_trackers(cfg: Any) -> None:
    """The Trainer leaves a wandb run open after training (and an MLflow run after an error). Close them before
    the run is sealed and renamed: an open run would go on writing into the sealed folder, or under the old
    `.partial` path. wandb also keeps the WANDB_DIR it first read for the whole process, so the next run in this
    process would log into this run's `.partial` path (creating it again): `teardown` makes it read the variable
    again."""
    import sys

    wandb = sys.modules.get("wandb") if cfg.report_to == "wandb" else None
    if wandb is not None:
        if getattr(wandb, "run", None) is not None:
            wandb.finish()
        wandb.teardown()
    mlflow = sys.modules.get("mlflow") if cfg.report_to == "mlflow" else None
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run()
