"""The `verifily` command line: a thin Typer app. Each command lives in `commands/<name>.py` and registers itself.

Start-up must stay fast (`verifily --help` answers without importing torch or transformers): command modules import
heavy libraries inside their functions only. Errors: a VerifilyError prints its message (no traceback) and exits
with its code; anything else is an internal error (exit 3) whose traceback shows only with --debug.
"""

from __future__ import annotations

import os
import sys

import typer

from . import __version__, telemetry
from .commands import (
    attribute,
    compare,
    dataset,
    evaluate,
    export,
    jobs,
    keys,
    models,
    remote,
    report,
    reproduce,
    runner,
    server,
    train,
    validate,
)
from .errors import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USER, VerifilyError

app = typer.Typer(
    name="verifily",
    help="Dataset-version-aware fine-tuning: train LoRA adapters on versioned datasets, evaluate per tag slice, "
    "compare runs, verify their hash chains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMANDS = (
    validate,
    train,
    evaluate,
    compare,
    reproduce,
    dataset,
    remote,
    keys,
    attribute,
    export,
    server,
    jobs,
    runner,
    models,
    report,
)
for _module in COMMANDS:
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"verifily {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    if debug:
        os.environ["VERIFILY_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (and exits with it when run as a script)."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # `verifily ... | head` closed the pipe: stop quietly, as a SIGPIPE'd tool would
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(args: list[str]) -> int:
    telemetry.turn_off()  # before any Hugging Face library is imported (see telemetry.py)
    debug = "--debug" in args or os.environ.get("VERIFILY_DEBUG") == "1"
    try:
        try:
            # standalone_mode=False: click returns typer.Exit's code instead of calling sys.exit
            rv = app(args=args, prog_name="verifily", standalone_mode=False)
            code = rv if isinstance(rv, int) else 0
        except Exception as e:
            from .runs.files import disk_full_error, is_disk_full

            if isinstance(e, VerifilyError) or not is_disk_full(e):
                raise
            raise disk_full_error(e, os.getcwd()) from e  # a full disk is the user's to fix, wherever it struck
    except VerifilyError as e:
        if e.exit_code:
            if os.environ.get("VERIFILY_ERROR_FORMAT") == "json":
                import json

                print(json.dumps(e.to_dict(), indent=2))
            else:
                print(e.render(), file=sys.stderr)
        code = e.exit_code
    except SystemExit as e:  # typer.Exit inside standalone_mode=False surfaces as its code
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the boundary of the program: turn bugs into a clean exit 3
        import click

        # Typer ≥ 0.20 vendors its own click (typer._click): its usage errors are TyperException, not ClickException.
        if isinstance(e, (click.exceptions.Exit, typer.Exit)):
            code = e.exit_code
        elif isinstance(e, (click.exceptions.Abort, typer.Abort)):
            print("aborted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        elif isinstance(e, (click.ClickException, typer.TyperException)) and hasattr(e, "show"):
            e.show()
            code = getattr(e, "exit_code", EXIT_USER)
        else:
            if debug:
                import traceback

                traceback.print_exc()
            print(f"internal error: {type(e).__name__}: {e}", file=sys.stderr)
            if not debug:
                print("hint: this is a bug in verifily; rerun with --debug for the traceback", file=sys.stderr)
            code = EXIT_INTERNAL
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise a second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = code or EXIT_BROKEN_PIPE
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        # A rank of a torchrun launch: its work is written and its process group destroyed. Skip the interpreter's
        # teardown, where gloo's worker threads can still free tensors after Python is gone and abort a finished
        # rank ("terminate called without an active exception", exit -6; seen once in CI after `completed:`).
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
