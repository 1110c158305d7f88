"""`verifily dataset …`: versioned datasets (init, hash, verify, info, diff)."""

from __future__ import annotations

import typer

from ..errors import not_implemented

dataset_app = typer.Typer(help="Versioned datasets: manifests, hashes, checks, diffs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


@dataset_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def verify() -> None:
    """Check a dataset's hashes, rows and data quality (not implemented yet)."""
    raise not_implemented("dataset verify", "Versioned datasets")
