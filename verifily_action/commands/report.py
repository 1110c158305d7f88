"""`verifily report`: a run's results (and its comparison with a baseline) as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command(name="report")
    def report(
        run: Path = typer.Option(..., "--run", help="The run folder to report on."),
        baseline: Path = typer.Option(
            None, "--baseline", help="A baseline run: adds `compare`'s per-slice delta chart and table."
        ),
        html: Path = typer.Option(..., "--html", help="The HTML file to write (CSS and chart script inlined)."),
        datasets_root: str = typer.Option(
            None, "--datasets-root", help="Where the datasets live, for the dataset diff (else $VERIFILY_DATASETS)."
        ),
    ) -> None:
        """Write the dashboard's pages for RUN (per-slice metrics with intervals, loss curve, hard examples,
        attribution; with --baseline the comparison) into one HTML file that opens offline."""
        from ..dashboard.static_report import write_report

        out = write_report(run, html, baseline, datasets_root)
        typer.echo(f"wrote {out}")
