"""Trainer callbacks: train_log.jsonl, progress (a rich bar on a TTY, plain lines in CI logs), Ctrl-C, and checkpoints
by time.

train_log.jsonl has one JSON object per logging step: step, epoch, loss, lr, grad_norm, tokens_per_s (real, i.e.
unpadded, tokens per second over the logging window). A line is also written at every checkpoint and at the last
step (`CheckpointCallback`), so the lines' windows cover every step once, also across a resume (which starts from a
checkpoint): each line's loss is the mean over the steps since the line before, and the run's train_loss is the
mean over all steps (`trainlog.mean_loss`). Ctrl-C asks the Trainer to save a checkpoint and stop at the end of the
current step, so an interrupted run is resumable; a second Ctrl-C stops at once. `training.checkpoint_minutes`
saves a checkpoint when that much time has passed since the last one, so a run killed without warning loses at
most that much.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..runs.files import append_line
from .ranks import agree


def _fmt_eta(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LogCallback(TrainerCallback):
    """Writes train_log.jsonl and shows progress. `tokens` returns the count of real tokens batched so far."""

    def __init__(self, log_path: Path, tokens: Callable[[], int], echo: Callable[[str], None], tty: bool | None = None):
        self.log_path = log_path
        self.tokens = tokens
        self.echo = echo
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.progress: Any = None
        self.task: Any = None
        self.last_time = 0.0
        self.last_tokens = 0
        self.start_time = 0.0
        self.start_step = 0
        self.summary: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = self.last_time = time.perf_counter()
        self.last_tokens = self.tokens()
        self.start_step = state.global_step
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train[/]"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            if "train_loss" in logs:
                self.summary = dict(logs)
            return
        now = time.perf_counter()
        tokens = self.tokens()
        dt = now - self.last_time
        rec = {
            "step": state.global_step,
            "epoch": round(float(logs.get("epoch", state.epoch or 0.0)), 6),
            "loss": logs["loss"],
            "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": round((tokens - self.last_tokens) / dt, 1) if dt > 0 else None,
        }
        self.last_time, self.last_tokens = now, tokens
        append_line(self.log_path, json.dumps(rec))
        lr = f"{rec['lr']:.2e}" if rec["lr"] is not None else "-"
        info = f"loss {rec['loss']:.4f} lr {lr}"
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=info)
            return
        done = state.global_step - self.start_step
        rate = (now - self.start_time) / done if done else 0.0
        eta = _fmt_eta(rate * (state.max_steps - state.global_step))
        pct = 100 * state.global_step / max(state.max_steps, 1)
        tps = f"{rec['tokens_per_s']:.0f} tok/s" if rec["tokens_per_s"] is not None else ""
        self.echo(
            f"step {state.global_step}/{state.max_steps} ({pct:.0f}%) epoch {rec['epoch']:.2f} {info} {tps} eta {eta}"
        )

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class InterruptCallback(TrainerCallback):
    """First Ctrl-C (SIGINT): save a checkpoint and stop after this step; a second one raises KeyboardInterrupt."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.echo("interrupt: saving a checkpoint after this step, then stopping (Ctrl-C again to stop now)")

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class CheckpointCallback(TrainerCallback):
    """Saves a checkpoint when `minutes` have passed since the last one (None or 0: never by time), and has a
    train_log line written at every checkpoint and at the last step. It must come after every callback that asks
    for a save (InterruptCallback): it reads what they set."""

    def __init__(self, minutes: float | None, clock: Callable[[], float] = time.monotonic):
        self.interval = float(minutes) * 60 if minutes else None
        self.clock = clock
        self.last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        last_step = state.global_step >= state.max_steps
        if self.interval is not None and not last_step and self.clock() - self.last >= self.interval:
            control.should_save = True
        # a multi-process run saves and stops where any rank asked to (its clock, its Ctrl-C), or the ranks hang
        control.should_save, control.should_training_stop = agree(control.should_save, control.should_training_stop)
        if control.should_save or control.should_training_stop or last_step:
            control.should_log = True  # the Trainer logs before it saves: the checkpoint starts a new window
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last = self.clock()
