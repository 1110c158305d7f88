"""`verifily compare`: compare runs slice by slice with paired significance, a summary, and gating rules."""

from __future__ import annotations

from pathlib import Path

import typer

from ..tags import comma_list

FAIL_ON_HELP = (
    "Gate rule (repeatable): METRIC[@SLICE] OP THRESHOLD[&THRESHOLD][:significant]. SLICE is a slice expression "
    "(key=value, a=x&b=y, key=* for each value, a=*&b=* for each combination). "
    "The change is run minus baseline; OP is <, <=, > or >=; THRESHOLD is a number in the metric's units (-0.02), "
    "points (-2pts) or percent of the baseline (-5%). E.g. `macro_f1@source=synthetic<-0.02`, "
    "`macro_f1@source=human&origin=imdb<-2pts`, `accuracy@source=*&origin=*<-2pts`, "
    "`accuracy<-1pts:significant`, `loss>0.05`. Exit code 1 when any rule holds."
)
SLICE_BY_HELP = (
    "Slice expressions, comma-separated or repeated: a tag key (every value of it), key=value, a=x&b=y (AND), "
    "a=*&b=* (every combination; also a×b). Default: what the runs were evaluated with."
)


def register(app: typer.Typer) -> None:
    @app.command(name="compare")
    def compare(
        runs: list[str] = typer.Option(
            ...,
            "--runs",
            help="Run folders, comma-separated or repeated; the first is the baseline (e.g. runs/a/,runs/b/).",
        ),
        slice_by: list[str] = typer.Option(None, "--slice-by", help=SLICE_BY_HELP),
        metric: list[str] = typer.Option(
            None, "--metric", help="Metric(s) to compare (default: those the baseline's evaluation reports)."
        ),
        eval_name: str = typer.Option(
            None,
            "--eval",
            help="Which evaluation (folder under <run>/eval/, e.g. ds_demo@v1-eval) when runs have several.",
        ),
        fmt: str = typer.Option("table", "--format", "-f", help="table, markdown (GitHub) or json."),
        fail_on: list[str] = typer.Option(None, "--fail-on", help=FAIL_ON_HELP),
        no_config_gates: bool = typer.Option(
            False, "--no-config-gates", help="Ignore the `gates:` recorded in the candidate runs' configs."
        ),
        datasets_root: str = typer.Option(
            None, "--datasets-root", help="Where the datasets live, for the dataset diff (else $VERIFILY_DATASETS)."
        ),
        output: Path = typer.Option(None, "--output", "-o", help="Also write the rendered output to this file."),
        chart: Path = typer.Option(
            None, "--chart", help="Also draw each run's per-slice metrics with their intervals into this PNG file."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and permutation resamples."),
        fdr: str = typer.Option(
            None,
            "--fdr",
            help="False-discovery control across the slices: bh (Benjamini-Hochberg) or by (Benjamini-Yekutieli, "
            "any dependence). ▲/▼ and :significant gates use the q-values. Default: each candidate run's config "
            "(eval.fdr).",
        ),
        discover: bool = typer.Option(
            False,
            "--discover",
            help="Also search every tag value and pair of tag values for the combination that regressed most: "
            "examples whose change is significantly worse than the rest's (paired runs; false discoveries "
            "controlled). Shown in the summary and the JSON.",
        ),
        discover_max: int = typer.Option(
            None,
            "--discover-max-candidates",
            min=1,
            help="The most candidate slices --discover tests (default: eval.discover_max_candidates' default).",
        ),
    ) -> None:
        """Compare runs per tag slice: each run's metrics and its change against the first, with paired bootstrap
        intervals and McNemar/permutation p-values; exit 1 when a --fail-on rule (or a config gate) matches."""
        from ..compare import compare as run_compare
        from ..compare import failed_gates
        from ..errors import GateFailure, Problem, VerifilyError
        from ..report import comparison as render

        if fmt not in render.FORMATS:
            raise VerifilyError(f"unknown --format {fmt!r}", hint=f"choose one of: {', '.join(render.FORMATS)}")
        from ..compare.fdr import METHODS

        if fdr is not None and fdr not in METHODS:
            raise VerifilyError(f"unknown --fdr {fdr!r}", hint=f"choose one of: {', '.join(METHODS)}")
        comparison = run_compare(
            comma_list(runs),
            metrics=comma_list(metric) or None,
            slice_by=list(slice_by or []) or None,
            eval_name=eval_name,
            fail_on=list(fail_on or []),
            config_gates=not no_config_gates,
            datasets_root=datasets_root,
            seed=seed,
            fdr_method=fdr,
            discover=discover,
            discover_max_candidates=discover_max,
        )
        for warning in comparison.get("warnings", []):
            typer.echo(f"warning: {warning}", err=True)
        if fmt == "table":
            render.print_table(comparison)
            text = render.markdown(comparison) if output else ""
        else:
            text = render.markdown(comparison) if fmt == "markdown" else render.to_json(comparison)
            typer.echo(text, nl=False)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        if chart:
            from ..report.charts import write_chart

            write_chart(comparison, chart)
            typer.echo(f"chart: {chart}", err=True)
        failed = failed_gates(comparison)
        if failed:
            raise GateFailure(
                f"{len(failed)} gate rule(s) failed",
                problems=[Problem(g["message"], hint=f"rule from {g['origin']}") for g in failed],
            )
