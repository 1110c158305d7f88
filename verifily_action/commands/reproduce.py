"""`verifily reproduce`: Verify a run's hash chain, or retrain it and compare."""

from __future__ import annotations

import typer

from ..errors import not_implemented


def register(app: typer.Typer) -> None:
    @app.command(name="reproduce", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def reproduce() -> None:
        """Verify a run's hash chain, or retrain it and compare. (not implemented yet)"""
        raise not_implemented("reproduce", "Compare and reproduce")
