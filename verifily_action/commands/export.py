"""`verifily export --run RUN --merged OUT | --adapter-only OUT`: a verified run as a model folder others can load."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(name="export")
    def export(
        run: Path = typer.Option(..., "--run", "-r", help="The run folder (runs/<name>) written by `verifily train`."),
        merged: Path = typer.Option(
            None,
            "--merged",
            metavar="OUT",
            help="Write the base model with the run's LoRA adapter merged into its weights (safetensors), the run's "
            "tokenizer and a model card (run key, root hash) into the new folder OUT.",
        ),
        adapter_only: Path = typer.Option(
            None,
            "--adapter-only",
            metavar="OUT",
            help="Copy the run's adapter (weights, config, label map, model card) and tokenizer into the new "
            "folder OUT.",
        ),
    ) -> None:
        """Export a completed run whose hash chain holds (checked first, as `reproduce --verify-only` does): merged
        into its base model, or the adapter alone. OUT must be new or empty; it appears whole or not at all."""
        from ..errors import VerifilyError

        if (merged is None) == (adapter_only is None):
            raise VerifilyError(
                "give exactly one of --merged OUT and --adapter-only OUT"
                + (", not both" if merged is not None else ""),
                hint=f"verifily export --run {run} --merged exported/<name> (the base model with the adapter merged), "
                "or --adapter-only exported/<name> (the adapter alone)",
            )
        from ..export.bundle import export_run

        out, kind = (merged, "merged") if merged is not None else (adapter_only, "adapter")
        # Libraries may print to stdout while loading: keep stdout for the result.
        with contextlib.redirect_stdout(sys.stderr):
            done = export_run(run, out, kind, echo=lambda s: typer.echo(s, err=True))
        what = "a merged model" if kind == "merged" else "an adapter"
        typer.echo(
            f"exported run {done.run_id} (root {done.root_hash[:16]}) as {what} to {done.out}: {len(done.files)} files"
        )
