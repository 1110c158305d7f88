"""The `verifily` CLI for tests: in this process through Typer's CliRunner (`run_cli`, the `cli` fixture), or as the
real entry point in a subprocess (`run_cli_process`, the `cli_process` fixture) for what only a process shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `verifily ARGS` in this process: Typer's CliRunner isolates stdin, stdout, stderr and the environment,
    and the CLI's own `main()` turns errors into exit codes and messages exactly as the console entry point does.
    Returns a CompletedProcess (text). `timeout` is kept for the subprocess runner's signature; it is not enforced."""
    from typer.testing import CliRunner

    from verifily_action import cli as climod

    before = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with CliRunner().isolation(env=env) as (out, err, _):
            code = climod.main(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["verifily", *args], code, stdout, stderr)


def run_cli_process(
    *args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `verifily` entry point in a subprocess (`python -m verifily_action.cli`): for what only a process
    shows — exit codes through `sys.exit`, closed pipes, start-up imports, signals."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "verifily_action.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
