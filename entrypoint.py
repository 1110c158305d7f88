#!/usr/bin/env python3
"""The docker action's entry point (action.yml runs this): everything happens in verifily_action.action (flow.main)."""

import sys


def _is_cli(argv: list[str]) -> bool:
    """`docker run IMAGE train --config X` (a verifily subcommand or option first): the image is the plain CLI."""
    if not argv:
        return False
    if argv[0].startswith("-"):
        return True
    import typer

    from verifily_action.cli import app

    return argv[0] in typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _main(argv: list[str]) -> int:
    from verifily_action.action import gpu_check

    if _is_cli(argv):
        from verifily_action.cli import main as cli_main

        gpu_check.check_cli_args(argv)
        return cli_main(argv)
    from verifily_action.action.flow import main

    gpu_check.check_action_env()  # warn early when the config wants CUDA and the container sees no GPU
    return main()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
