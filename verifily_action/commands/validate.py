"""`verifily validate CONFIG`: check a train config against the schema and report every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import VerifilyError


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        config: Path = typer.Argument(..., help="The train config (YAML) to check."),
        as_json: bool = typer.Option(False, "--json", help="Print the result (and errors) as JSON."),
    ) -> None:
        """Check a train config; exit 0 when valid, 2 with every problem listed otherwise."""
        from ..config import load_config

        try:
            cfg = load_config(config)
        except VerifilyError as e:
            if as_json:
                typer.echo(json.dumps({"valid": False, **e.to_dict()}, indent=2))
                raise typer.Exit(code=e.exit_code) from None
            raise
        if as_json:
            typer.echo(json.dumps({"valid": True, "config": cfg.to_dict()}, indent=2))
        else:
            typer.echo(f"{config}: valid ({cfg.task}, model {cfg.model}, dataset {cfg.dataset})")
