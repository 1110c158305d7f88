"""`verifily train --config CONFIG`: fine-tune a LoRA adapter on a dataset version into a run folder."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path | None = typer.Option(None, "--config", "-c", help="The train config (YAML)."),
        dataset: str | None = typer.Option(
            None, "--dataset", help="Train on this dataset (name@version or manifest path) instead of the config's."
        ),
        datasets_root: str | None = typer.Option(
            None, "--datasets-root", help="Folder of <name>/<version>/manifest.yaml (overrides config and env)."
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", help="Folder holding run folders."),
        cache_dir: str | None = typer.Option(
            None,
            "--cache-dir",
            help="Run cache folder, looked in after --output-dir and filled with new runs "
            "(overrides config and VERIFILY_RUN_CACHE).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Validate, resolve dataset and model, say what would run; train nothing."
        ),
        force: bool = typer.Option(False, "--force", help="Retrain even when a completed run has the same run key."),
        resume: str | None = typer.Option(
            None, "--resume", metavar="RUN", help="Continue an interrupted or failed run (its .partial folder)."
        ),
    ) -> None:
        """Fine-tune a LoRA/QLoRA adapter; writes a run folder with its hash chain (cached by run key)."""
        from ..train.plan import TrainOptions, describe, make_plan

        opts = TrainOptions(
            config=config,
            dataset=dataset,
            datasets_root=datasets_root,
            output_dir=output_dir,
            cache_dir=cache_dir,
            force=force,
            resume=resume,
            dry_run=dry_run,
        )
        if dry_run:
            plan = make_plan(opts)
            typer.echo(f"{config or resume}: valid; dry run, nothing trained")
            typer.echo(describe(plan))
            return
        from ..train.job import train as run_train

        # stdout carries only the run folder (scripts do `RUN=$(verifily train ...)`); libraries that print while
        # importing or training (transformers prints a WANDB notice) are sent to stderr with the progress.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_train(opts, echo=lambda s: typer.echo(s, err=True))
        typer.echo(str(result.run_dir))
