"""`verifily dataset push REF --to URL` and `verifily dataset pull REF --from URL` (registered on `dataset`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .dataset import REF_HELP, ROOT_HELP, dataset_app

URL_HELP = "Server URL (default: $VERIFILY_SERVER, else the one `verifily login` saved)."


def register(app: typer.Typer) -> None:
    """The commands are on `dataset_app`; registered when this module is imported."""


@dataset_app.command("push")
def push(
    ref: str = typer.Argument(..., help=REF_HELP),
    to: str = typer.Option(None, "--to", help=URL_HELP),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
) -> None:
    """Upload a dataset version: files by content hash (those the server has are skipped; large ones in resumable
    chunks), then the manifest; the server verifies every file before the version becomes visible."""
    from ..datasets import resolve
    from ..remote.client import Client
    from ..remote.push import push as do_push

    m = resolve(ref, datasets_root, from_server=False)  # what is pushed is here
    client = Client.connect(to)
    res = do_push(m, client)
    resumed = f", resumed after {res.resumed_bytes:,} bytes already there" if res.resumed_bytes else ""
    typer.echo(f"uploaded {len(res.uploaded)} file(s), skipped {len(res.skipped)} the server had{resumed}")
    state = "pushed" if res.created else "already on the server (same dataset hash)"
    typer.echo(f"{res.ref} {state}: {client.url} (dataset hash {res.dataset_hash})")


@dataset_app.command("pull")
def pull(
    ref: str = typer.Argument(..., help="name@version on the server."),
    from_: str = typer.Option(None, "--from", help=URL_HELP),
    datasets_root: str = typer.Option(None, "--datasets-root", help=ROOT_HELP),
) -> None:
    """Download a version into <datasets root>/<name>/<version>/, every file checked against its hash and rows."""
    from ..datasets.registry import datasets_root as root_of
    from ..remote.client import Client
    from ..remote.pull import pull as do_pull
    from ..server.names import check_name

    name, _, version = ref.partition("@")
    dest = Path(root_of(datasets_root)) / check_name(name, "dataset") / check_name(version, "version")
    client = Client.connect(from_)
    m, fetched = do_pull(client, name, version, dest)
    rows = sum(f.rows or 0 for files in m.splits.values() for f in files)
    state = "pulled" if fetched else "already here (same dataset hash)"
    typer.echo(f"{m.ref} {state}: {dest} ({rows:,} rows, dataset hash {m.dataset_hash()}, verified)")
