"""`verifily eval --run RUN`: evaluate a run per tag slice with bootstrap confidence intervals."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..runs.layout import EVAL_RESULTS


def register(app: typer.Typer) -> None:
    @app.command(name="eval")
    def evaluate(
        run: Path = typer.Option(..., "--run", "-r", help="The run folder (runs/<name>) written by `verifily train`."),
        dataset: str = typer.Option(
            None,
            "--dataset",
            "-d",
            help="Dataset to evaluate on: name@version or a manifest path. "
            "Default: the run's eval dataset, else its training dataset. Another version writes another eval folder.",
        ),
        split: str = typer.Option(None, "--split", help="Split to evaluate. Default: the run config's eval_split."),
        slice_by: list[str] = typer.Option(
            None,
            "--slice-by",
            help="Slice expressions, comma-separated or repeated: a tag key (one slice per value), key=value, "
            "a=x&b=y (AND), a=*&b=* (every combination; also a×b). Default: eval.slice_by.",
        ),
        slice_: list[str] = typer.Option(
            None,
            "--slice",
            help='One slice expression, repeatable: "source=human & origin=imdb", "source=*&origin=*" (a comma also '
            "means AND here). Default: eval.slices.",
        ),
        datasets_root: str = typer.Option(
            None, "--datasets-root", help="Folder holding <name>/<version>/manifest.yaml (else $VERIFILY_DATASETS)."
        ),
        batch_size: int = typer.Option(
            None, "--batch-size", min=1, help="Examples per batch (default: eval.batch_size)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
        discover: bool = typer.Option(
            False,
            "--discover",
            help="Also search every tag value and pair of tag values (n >= eval.min_slice_size) for slices that "
            "score significantly worse than the rest (false discoveries controlled), worst first.",
        ),
        discover_max: int = typer.Option(
            None,
            "--discover-max-candidates",
            min=1,
            help="The most candidate slices --discover tests (default: eval.discover_max_candidates).",
        ),
        as_json: bool = typer.Option(False, "--json", help=f"Print {EVAL_RESULTS} to stdout instead of a table."),
    ) -> None:
        """Evaluate a run: batched inference, metrics per tag slice with 95% bootstrap CIs, hard examples."""
        from ..evaluate.runner import EvalOptions, evaluate_run
        from ..evaluate.slices import parse_list, parse_slice
        from ..report.results import notes, print_results

        opts = EvalOptions(
            dataset=dataset,
            split=split,
            slice_by=parse_list(slice_by) if slice_by else None,
            cross=[parse_slice(s) for s in slice_] if slice_ else None,
            datasets_root=datasets_root,
            batch_size=batch_size,
            seed=seed,
            discover=discover,
            discover_max_candidates=discover_max,
        )
        from ..evaluate.runner import evaluate_rank
        from ..runs.signature import configured_key
        from ..train.ranks import world

        configured_key()  # a VERIFILY_SIGNING_KEY that cannot sign fails now, not after evaluating
        if not world().main:  # under torchrun: this rank scores its share of the rows; rank 0 writes (sharded.py)
            evaluate_rank(run, opts)
            return
        outcome = evaluate_run(run, opts)
        for note in notes(outcome.results):
            typer.echo(f"note: {note}", err=True)
        if as_json:
            typer.echo(json.dumps(outcome.results, indent=2, ensure_ascii=False))
        else:
            print_results(outcome.results, str(outcome.eval_dir))
