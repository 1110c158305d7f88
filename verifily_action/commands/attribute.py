"""`verifily attribute --run RUN`: which train rows and tag segments helped or hurt each eval slice."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..attribute import defaults

SHOWN_ROWS = 10


def _print(result) -> None:  # result: attribute.runner.Attribution
    from ..report.escape import inert

    m = result.method
    if m["method"] in ("loo", "segment-shapley"):
        _print_segments(result)
        return
    data = f"{m['train']['n']:,} train rows ({m['train']['ref']}) on {m['eval']['n']:,} eval rows ({m['eval']['ref']})"
    if m["method"] == "tracin":  # values on the loss's scale, often far below 1e-4: shown with 3 significant digits
        num, row_num = "{:+.3g}".format, "{:+.3g}".format
        typer.echo(
            f"tracin ({len(m['checkpoints'])} checkpoint{'s' * (len(m['checkpoints']) != 1)}, "
            f"{m['parameters']['count']:,} adapter parameters, gradients "
            f"projected to {m['projection']['dim']}) of {data}: values sum to {m['utility']:.4g}, the first-order drop "
            "in the mean eval loss of one step on every train row"
        )
    else:
        num, row_num = "{:+.4f}".format, "{:+.5f}".format
        typer.echo(
            f"{m['method']} (k={m['k']}) of {data}: values sum to {m['utility']:.4f}, the KNN classifier's accuracy"
        )
    conf = round(100 * result.segments["confidence"])
    typer.echo(f"\nsegments (summed value, {conf}% interval over the eval rows):")
    for s in result.segments["overall"]:
        typer.echo(
            f"  {inert(s['key'])}={inert(s['value'])}  rows {s['rows']:,}  {num(s['sum'])} "
            f"[{num(s['ci_low'])}, {num(s['ci_high'])}]  {s['verdict']}"
        )
    worst = sorted(result.rows, key=lambda r: r["value"])[:SHOWN_ROWS]
    typer.echo(f"\nthe {len(worst)} lowest-valued train rows (most harmful first):")
    for r in worst:
        text = inert(r["text"])
        text = text if len(text) <= 60 else text[:57] + "..."
        tags = ",".join(f"{k}={v}" for k, v in r["tags"].items())
        label = f"label={inert(r['label'])}  " if "label" in r else ""
        typer.echo(f"  {row_num(r['value'])}  {inert(r['id'])}  [{inert(tags)}]  {label}{text}")
    typer.echo(f"\nwritten: {result.folder} (root hash {str(result.root_hash)[:16]})")


def _print_segments(result) -> None:
    m, seg = result.method, result.segments
    typer.echo(
        f"{m['method']} of the {m['by']} segments of {m['train']['ref']} ({len(m['retrains'])} retrains), "
        f"{m['metric']} on {m['eval']['ref']}:"
    )
    conf = round(100 * seg["confidence"])
    for block, label in [(seg["overall"], "overall"), *((s["segments"], s["slice"]) for s in seg["slices"])]:
        typer.echo(f"  {label}  (value: how much better the run is with the segment; {conf}% interval)")
        for s in block:
            typer.echo(
                f"    {s['key']}={s['value']}  rows {s['rows']:,}  {s['sum']:+.4f} "
                f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]  {s['verdict']}"
            )
    typer.echo(f"written: {result.folder} (root hash {str(result.root_hash)[:16]})")


def register(app: typer.Typer) -> None:
    @app.command(name="attribute")
    def attribute(
        run: Path = typer.Option(..., "--run", "-r", help="The run folder (runs/<name>) written by `verifily train`."),
        method: str = typer.Option(
            "knn-shapley",
            "--method",
            help="knn-shapley (rows; exact, classification, on the run's own embeddings), loo (leave one tag "
            "segment out: a retrain each), segment-shapley (Shapley over the segments of one tag key: exact up to 4, "
            "2^n - 2 retrains; beyond, sampled orderings within --budget), tracin (rows; any task: learning rate "
            "x the dot product of the rows' projected "
            "loss gradients at the run's adapter).",
        ),
        by: list[str] = typer.Option(
            None, "--by", help="Tag key of the train rows to value as segments (repeatable). Default: every tag key."
        ),
        slice_by: list[str] = typer.Option(
            None,
            "--slice-by",
            "--slice",
            help="Eval slice expressions (as `eval --slice-by`), each valued separately. Default: eval.slice_by.",
        ),
        nearest: int = typer.Option(
            None,
            "--nearest",
            min=0,
            help="knn-shapley: value each eval row's M nearest train rows only (the truncated approximation; 0: "
            f"exact). Default: exact up to {defaults.EXACT_UP_TO:,} train rows, else {defaults.NEAREST:,}.",
        ),
        k: int = typer.Option(
            defaults.K, "--k", min=1, help="Neighbours of the KNN classifier whose accuracy is valued."
        ),
        base_embeddings: bool = typer.Option(
            False, "--base-embeddings", help="Embed with the base model (adapter left out) instead of the run's."
        ),
        datasets_root: str = typer.Option(
            None, "--datasets-root", help="Folder holding <name>/<version>/manifest.yaml (else the recorded one)."
        ),
        batch_size: int = typer.Option(
            None,
            "--batch-size",
            min=1,
            help="Rows per batch: of embeddings (knn-shapley; default eval.batch_size) or of per-example gradients "
            "(tracin; default training.batch_size).",
        ),
        resamples: int = typer.Option(
            defaults.RESAMPLES, "--resamples", min=100, help="Bootstrap resamples of the intervals."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples (and of tracin's projection)."),
        projection_dim: int = typer.Option(
            defaults.PROJECTION_DIM,
            "--projection-dim",
            help="tracin: length of the random projection of each row's gradient.",
        ),
        projection: str = typer.Option(
            defaults.PROJECTION,
            "--projection",
            help="tracin: sketch (sparse CountSketch, fast) or gaussian (dense, slow on CPU).",
        ),
        jobs: int = typer.Option(defaults.JOBS, "--jobs", min=1, help="Retrains at once (loo, segment-shapley)."),
        seeds: int = typer.Option(
            defaults.SEEDS,
            "--seeds",
            min=1,
            help="loo, segment-shapley: train every coalition with this many seeds (the run's own first), so the "
            "intervals hold training noise too (more than 1: the full data is retrained with the others).",
        ),
        budget: int = typer.Option(
            defaults.BUDGET,
            "--budget",
            min=1,
            help="The most retrains loo or segment-shapley may start (else exit 2 first).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print method.json and segments.json as one JSON object."),
    ) -> None:
        """Value every train row (and each tag segment, with an interval) for the eval set and each eval slice;
        writes attribution/<method>/ into the run and adds it to the hash chain."""
        from ..attribute.runner import AttributeOptions, attribute_run, check_method

        check_method(method)  # before loading anything
        result = attribute_run(
            run,
            AttributeOptions(
                method=method,
                by=list(by or []),
                slice_by=list(slice_by) if slice_by else None,
                k=k,
                nearest=nearest,
                base_embeddings=base_embeddings,
                datasets_root=datasets_root,
                batch_size=batch_size,
                resamples=resamples,
                seed=seed,
                projection_dim=projection_dim,
                projection=projection,
                jobs=jobs,
                budget=budget,
                seeds=seeds,
            ),
        )
        if as_json:
            typer.echo(json.dumps({"method": result.method, "segments": result.segments}, indent=2))
        else:
            _print(result)
