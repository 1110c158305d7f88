"""`verifily eval`: Evaluate a run per tag slice with confidence intervals."""

from __future__ import annotations

import typer

from ..errors import not_implemented


def register(app: typer.Typer) -> None:
    @app.command(name="eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def evaluate() -> None:
        """Evaluate a run per tag slice with confidence intervals. (not implemented yet)"""
        raise not_implemented("eval", "Evaluation")
