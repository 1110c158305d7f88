"""`verifily push --run RUN [--tag MODEL@VERSION] [--stage STAGE]` and `verifily pull MODEL@REF`: the server's run
store and model registry (verifily_action/remote/runs.py)."""

from __future__ import annotations

from pathlib import Path

import typer

URL_HELP = "Server URL (default: $VERIFILY_SERVER, else the one `verifily login` saved)."


def register(app: typer.Typer) -> None:
    @app.command("push")
    def push(
        run: Path = typer.Option(..., "--run", help="A sealed run folder (as `verifily train` wrote it)."),
        tag: str = typer.Option(None, "--tag", help="Name it MODEL@VERSION (set once: a version never changes)."),
        stage: str = typer.Option(None, "--stage", help="Point MODEL@STAGE (e.g. production) at that version."),
        to: str = typer.Option(None, "--to", help=URL_HELP),
    ) -> None:
        """Upload a run; the server recomputes its hash chain and refuses a tampered run."""
        from ..remote.client import Client
        from ..remote.runs import push_run

        client = Client.connect(to)
        res = push_run(run, client, tag, stage)
        state = "pushed" if res.created else "already on the server"
        typer.echo(
            f"run {res.run_id} {state}: root {res.root_hash} ({res.uploaded} file(s) sent, {res.skipped} skipped)"
        )
        for name in (res.version, res.stage):
            if name:
                typer.echo(f"{name} -> {res.root_hash}")

    @app.command("pull")
    def pull(
        ref: str = typer.Argument(..., help="MODEL@VERSION, or MODEL@STAGE (e.g. sentiment@production)."),
        out: Path = typer.Option(None, "--out", help="Folder to write (default: runs/<run id>); must not exist."),
        from_: str = typer.Option(None, "--from", help=URL_HELP),
    ) -> None:
        """Fetch a run from the model registry; its hash chain is verified before the folder appears."""
        from ..remote.client import Client
        from ..remote.runs import pull_model

        dest, info = pull_model(Client.connect(from_), ref, out)
        via = f" (stage {info['stage']})" if info.get("stage") else ""
        name = f"{info['model']}@{info['version']}{via}"
        typer.echo(f"{name}: run {info['run_id']} -> {dest} (root {info['root_hash']}, verified)")
