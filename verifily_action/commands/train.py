"""`verifily train --config CONFIG`: fine-tune a LoRA adapter on a dataset version into a run folder."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from ..runs.layout import PARTIAL


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Path | None = typer.Option(None, "--config", "-c", help="The train config (YAML)."),
        dataset: str | None = typer.Option(
            None, "--dataset", help="Train on this dataset (name@version or manifest path) instead of the config's."
        ),
        datasets_root: str | None = typer.Option(
            None, "--datasets-root", help="Folder of <name>/<version>/manifest.yaml (overrides config and env)."
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", help="Folder holding run folders."),
        cache_dir: str | None = typer.Option(
            None,
            "--cache-dir",
            help="Run cache folder, looked in after --output-dir and filled with new runs "
            "(overrides config and VERIFILY_RUN_CACHE).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Validate, resolve dataset and model, say what would run; train nothing."
        ),
        force: bool = typer.Option(False, "--force", help="Retrain even when a completed run has the same run key."),
        resume: str | None = typer.Option(
            None, "--resume", metavar="RUN", help=f"Continue an interrupted or failed run (its {PARTIAL} folder)."
        ),
        as_json: bool = typer.Option(
            False,
            "--json",
            help="Print the result as JSON on stdout: the plan with --dry-run, else the run folder and key; errors "
            "too (with their file, line and JSON path).",
        ),
        nproc: int | None = typer.Option(
            None,
            "--nproc",
            metavar="N",
            help="Train with N processes (one per GPU, else per CPU core) started through torchrun; "
            "docs/distributed.md.",
        ),
    ) -> None:
        """Fine-tune a LoRA/QLoRA adapter; writes a run folder with its hash chain (cached by run key)."""
        from ..errors import VerifilyError
        from ..train.plan import TrainOptions, describe, make_plan, summary

        opts = TrainOptions(
            config=config,
            dataset=dataset,
            datasets_root=datasets_root,
            output_dir=output_dir,
            cache_dir=cache_dir,
            force=force,
            resume=resume,
            dry_run=dry_run,
            world_size=nproc,
        )
        try:
            if nproc is not None:
                from ..train.launch import check_nproc

                check_nproc(nproc)  # before any planning: the machine cannot hold N processes
            if dry_run:
                plan = make_plan(opts)
                if as_json:
                    typer.echo(json.dumps({"ok": True, "dry_run": True, **summary(plan)}, indent=2))
                    return
                typer.echo(f"{config or resume}: valid; dry run, nothing trained")
                typer.echo(describe(plan))
                return
            from ..runs.signature import configured_key
            from ..train import launch, ranks

            configured_key()  # a VERIFILY_SIGNING_KEY that cannot sign fails now, not after training
            if nproc is not None:  # checked here, then trained by N processes under torchrun
                code = launch.run(opts, nproc, as_json, echo=lambda s: typer.echo(s, err=True))
                raise typer.Exit(code=code)

            # stdout carries only the run folder (scripts do `RUN=$(verifily train ...)`); libraries that print
            # while importing or training (transformers prints a WANDB notice) go to stderr with the progress.
            with contextlib.redirect_stdout(sys.stderr):
                result = ranks.train(opts, echo=lambda s: typer.echo(s, err=True))
            if not ranks.world().main:  # rank 0 prints the result
                return
        except VerifilyError as e:
            if not as_json:
                raise
            typer.echo(json.dumps({"ok": False, **e.to_dict()}, indent=2))
            raise typer.Exit(code=e.exit_code) from None
        if as_json:
            meta = result.meta
            out = {"ok": True, "run_dir": str(result.run_dir), "cached": result.cached}
            out.update({k: meta.get(k) for k in ("run_key", "status", "root_hash")})
            typer.echo(json.dumps(out, indent=2))
            return
        typer.echo(str(result.run_dir))
