#!/usr/bin/env python3
"""The docker action's entry point (action.yml runs this): everything happens in verifily_action.action (flow.main)."""

import os
import sys

# What the comment image (Dockerfile target `comment`: no torch, transformers, peft or datasets) can run: the
# Action's comment mode and these commands; the rest need the cpu or cuda image.
COMMENT_IMAGE_COMMANDS = ("compare", "validate", "keys")


def _comment_image_refuses(argv: list[str]) -> str | None:
    """In the comment image, why `argv` cannot run there (None: it can). No arguments is the Action: comment mode,
    the image's one mode (INPUT_MODE unset means comment)."""
    if os.environ.get("VERIFILY_IMAGE_TARGET") != "comment":
        return None
    if not argv:
        mode = os.environ.get("INPUT_MODE", "").strip() or "comment"
        os.environ["INPUT_MODE"] = mode
        if mode != "comment":
            return f"the comment image runs `mode: comment` only, not {mode!r}: use the Action's root (cpu) or gpu/"
        return None
    if argv[0].startswith("-") or argv[0] in COMMENT_IMAGE_COMMANDS:
        return None
    return (
        f"`verifily {argv[0]}` needs torch and transformers, which the comment image leaves out; it runs "
        f"{', '.join(COMMENT_IMAGE_COMMANDS)} and the Action's comment mode. Use the -cpu or -cuda image."
    )


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
    refused = _comment_image_refuses(argv)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        if not argv:
            print(f"::error::{refused}")  # the Action's log shows it as an annotation
        return 2
    from verifily_action.action import gpu_check

    if _is_cli(argv):
        from verifily_action.cli import main as cli_main

        gpu_check.check_cli_args(argv)
        return cli_main(argv)
    from verifily_action.action.flow import main

    if os.environ.get("INPUT_MODE", "").strip() != "comment":  # the comment job trains nothing
        gpu_check.check_action_env()  # warn early when the config wants CUDA and the container sees no GPU
    return main()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
