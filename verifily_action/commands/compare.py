"""`verifily compare`: Compare runs slice by slice with paired significance."""

from __future__ import annotations

import typer

from ..errors import not_implemented


def register(app: typer.Typer) -> None:
    @app.command(name="compare", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def compare() -> None:
        """Compare runs slice by slice with paired significance. (not implemented yet)"""
        raise not_implemented("compare", "Compare and reproduce")
