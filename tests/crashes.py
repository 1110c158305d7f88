"""Crash points and lock holders for the run-folder tests: a process killed at a chosen call, and a second process
holding a run's lock.

`crash_at(target, n, *args)` runs `verifily ARGS` (or, with `call=`, a function of this module) in a subprocess
that dies at the n-th call of `target` ("module:attribute") the way kill -9 kills: `os._exit`, so no `finally`,
no `except`, no cleanup runs. `after=True` lets that call finish first. `exchange=False` makes the run-folder swap
take its fallback path (two renames) instead of the atomic exchange.

    python -m tests.crashes verifily_action.runs.folder:_rename 1 before exchange cli -- train --config train.yaml

`paused_at(target, n, *args)` starts `verifily ARGS` in a subprocess that stops at the n-th call of `target` until
the test lets it go on (`proc.communicate("\n")`): a real process caught in the middle of training or evaluating.
`lock_held(run_dir)` holds a run's lock in another process for the duration of a `with` block (yields its pid).
A small sealed run to crash around: tests/builders.py `recorded_run(dir)`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.paths import REPO

KILLED = 137


def crash_at(
    target: str, n: int, *args: str, after: bool = False, exchange: bool = True, call: str | None = None
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.crashes", target, str(n), "after" if after else "before"]
    cmd += ["exchange" if exchange else "fallback", call or "cli", "--", *args]
    return subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=600)


@contextmanager
def paused_at(target: str, n: int, *args: str) -> Iterator[subprocess.Popen]:
    cmd = [sys.executable, "-m", "tests.crashes", target, str(n), "pause", "exchange", "cli", "--", *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "paused":
            proc.kill()
            raise AssertionError(f"the process did not reach {target}: {line}{proc.communicate()[1][-3000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _main(argv: list[str]) -> int:
    target, n, when, exchange, program, sep, *args = argv
    assert sep == "--", argv
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    calls = 0

    def die() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(KILLED)

    def wrapper(*a: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == int(n) and when == "pause":
            os.write(1, b"paused\n")  # fd 1 itself: `train` sends sys.stdout to stderr while it trains
            sys.stdin.readline()
        if calls == int(n) and when == "before":
            die()
        out = original(*a, **kw)
        if calls == int(n) and when == "after":
            die()
        return out

    setattr(module, attr, wrapper)
    if exchange == "fallback":
        from verifily_action.runs import folder

        folder._exchange = lambda a, b: False
    if program == "cli":
        from verifily_action.cli import main

        return main(args)
    fn = getattr(sys.modules[__name__], program)
    fn(*args)
    return 0


# ---------------------------------------------------------------- programs for crash_at(call=...)


def add_eval_file(run_dir: str, name: str = "extra.json") -> None:
    """Add a file to a sealed run the way eval adds its results: under the lock, through folder.replace_run."""
    from verifily_action.runs import chain, files, folder
    from verifily_action.runs.lock import run_lock

    def change(stage: Path) -> str:
        files.write_text_atomic(stage / "eval" / "x" / name, json.dumps({"n": 1}) + "\n")
        return chain.add_artifacts(stage, [stage / "eval" / "x" / name])

    with run_lock(run_dir, "evaluating"):
        folder.replace_run(Path(run_dir), change)


# ---------------------------------------------------------------- a second process holding a lock


@contextmanager
def lock_held(run_dir: str | Path, doing: str = "training", shared: bool = False) -> Iterator[int]:
    code = (
        "import sys\n"
        "from verifily_action.runs.lock import run_lock\n"
        "with run_lock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == 'shared'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir), doing, "shared" if shared else "exclusive"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "held", (line, proc.stderr.read() if proc.stderr else "")
        yield proc.pid
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
