"""`verifily runner --server URL --token T`: lease jobs from a Verifily server and train them (runner/agent.py)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

ENV_RUNNER_TOKEN = "VERIFILY_RUNNER_TOKEN"


def register(app: typer.Typer) -> None:
    from ..runner import POLL_SECONDS

    @app.command()
    def runner(
        server: str = typer.Option(..., "--server", help="The Verifily server to lease jobs from."),
        token: str | None = typer.Option(
            None,
            "--token",
            help=f"A runner token (`verifily token create --scope runner`; default ${ENV_RUNNER_TOKEN}).",
        ),
        labels: str = typer.Option(
            "",
            "--labels",
            help="What this runner offers, comma-separated (e.g. gpu,h100): it takes the jobs whose "
            "labels are all among them.",
        ),  # fmt: skip
        max_jobs: int | None = typer.Option(None, "--max-jobs", min=1, help="Exit 0 after N jobs (default: never)."),
        work_dir: Path | None = typer.Option(
            None,
            "--work-dir",
            help="This runner's folder (one runner each): a folder per job, removed when the job ends "
            "(default: <VERIFILY_CACHE or ~/.cache/verifily>/runner).",
        ),
        name: str | None = typer.Option(None, "--name", help="This runner's name on the server (default host-pid)."),
        poll: float = typer.Option(
            POLL_SECONDS,
            "--poll",
            min=0.05,
            metavar="SECONDS",
            help="Pause between lease calls when idle.",
        ),
    ) -> None:
        """Run jobs from a server's queue: one at a time, heartbeating the lease, uploading checkpoints and the
        sealed run; SIGTERM releases the current job (checkpointed) back to the queue and exits 0."""
        from ..errors import VerifilyError
        from ..runner.agent import Agent, Options

        given = token or os.environ.get(ENV_RUNNER_TOKEN)
        if not given:
            raise VerifilyError("no runner token", hint=f"pass --token or set {ENV_RUNNER_TOKEN}")
        wanted = [x.strip() for x in labels.split(",") if x.strip()]
        from ..train.models import cache_root

        folder = (work_dir or cache_root() / "runner").resolve()
        opts = Options(server, given, wanted, max_jobs, folder, name or "", poll)
        raise typer.Exit(code=Agent(opts).run())
