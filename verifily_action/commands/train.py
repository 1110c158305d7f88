"""`verifily train --config CONFIG`: fine-tune a LoRA adapter on a dataset version into a run folder."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import not_implemented


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path = typer.Option(..., "--config", "-c", help="The train config (YAML)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and say what would run; train nothing."),
    ) -> None:
        """Fine-tune a LoRA/QLoRA adapter; writes a run folder with its hash chain."""
        from ..config import load_config

        cfg = load_config(config)
        if dry_run:
            typer.echo(f"{config}: valid; would train task={cfg.task} model={cfg.model} dataset={cfg.dataset}")
            return
        raise not_implemented("train", "Training")
