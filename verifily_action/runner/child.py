"""The training child: `verifily train ...` in a process of its own, forked from a multiprocessing forkserver that
has torch, transformers and the training code loaded once (a tiny job: 1.3 s a child instead of 5.5 s for a fresh
interpreter, measured on 2 cores; bench numbers in the runner's report).

The child's stderr (progress, warnings, errors) goes to the job's `train.log` and its stdout (the run folder `train`
prints) to `out.txt`. It stops like `train` does: SIGINT saves a checkpoint and exits 130, and `stop` follows with
SIGKILL after a grace. SIGTERM is the runner's to handle, so the child ignores it. It dies with its runner: a
runner killed outright (SIGKILL, OOM) leaves no training behind — the child watches the runner's pid (a forkserver
outlives its client while any child of it lives, so the forkserver's own exit cannot be the signal), and dies with
the forkserver too (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

PRELOAD = [
    "torch",
    "transformers",
    "peft",
    "datasets",
    "verifily_action.commands.train",  # not verifily_action.cli: a runner started with `-m verifily_action.cli`
    "verifily_action.train.job",  # has each child run that module as its __mp_main__, which warns if it is loaded
    "verifily_action.train.trainer",
]
CHILD_ENV_DROPPED = ("VERIFILY_SERVER", "VERIFILY_TOKEN", "VERIFILY_RUNNER_TOKEN")  # datasets come through the lease
_context: ForkServerContext | None = None


def context() -> ForkServerContext:
    """The forkserver context, started on first use (the forkserver imports PRELOAD once)."""
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _context = ctx
    return _context


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a killed runner may leave its child to finish
        pass


def _die_with_runner(runner: int) -> None:
    """A thread that SIGKILLs this process when the runner's process ends (pidfd, else polled every second)."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(runner)
            select.select([fd], [], [])  # readable once the process has exited
        except OSError:  # no pidfd here, or the runner is already gone
            while True:
                try:
                    os.kill(runner, 0)
                except ProcessLookupError:
                    break
                time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="runner-watch").start()


def _main(argv: list[str], folder: str, log: str, out: str, runner: int) -> None:
    """In the child: outputs to the job's files, then `verifily <argv>`; exits with its code."""
    _die_with_parent()
    _die_with_runner(runner)
    os.setpgrp()  # a Ctrl-C at the runner's terminal is the runner's to pass on (a second SIGINT stops at once)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in CHILD_ENV_DROPPED:
        os.environ.pop(name, None)
    os.chdir(folder)
    for fd, path in ((1, out), (2, log)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from ..cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: the forkserver's preloaded state is not ours to clean


class Child:
    def __init__(self, argv: list[str], folder: Path, log: Path, out: Path) -> None:
        args = (argv, str(folder), str(log), str(out), os.getpid())
        self.proc: Any = context().Process(target=_main, args=args, daemon=False)
        self.proc.start()

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def exitcode(self) -> int | None:
        """None while it runs; a negative code is the signal that ended it."""
        return self.proc.exitcode

    def wait(self, timeout: float) -> int | None:
        self.proc.join(timeout)
        return self.proc.exitcode

    def stop(self, grace: float, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """SIGINT (train saves a checkpoint and exits 130), then SIGKILL after `grace` seconds, or sooner once
        `hurry()` says so; returns the exit code (0: it finished meanwhile)."""
        if self.proc.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            end = time.monotonic() + grace
            while self.wait(0.2) is None:
                if time.monotonic() >= end or hurry():
                    self.kill()
        return self.proc.exitcode

    def kill(self) -> None:
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
