"""`verifily keys init`: make the Ed25519 key pair that signs runs' root hashes (`runs.signature`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    keys = typer.Typer(
        help="Signing keys: a run's root hash signed with your key proves that you sealed it.",
        no_args_is_help=True,
    )
    app.add_typer(keys, name="keys")

    @keys.command(name="init")
    def init(
        folder: Path = typer.Option(
            None, "--dir", help="Where to write the key pair (default: $XDG_CONFIG_HOME/verifily/keys, else ~/.config)."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing key pair."),
    ) -> None:
        """Write signing_key.pem (private, mode 0600) and signing_key.pub.pem; runs are signed once
        VERIFILY_SIGNING_KEY names the private key."""
        from ..runs.signature import ENV, generate

        private, public, kid = generate(folder, force=force)
        typer.echo(f"private key: {private} (mode 600: keep it secret)")
        typer.echo(f"public key:  {public}")
        typer.echo(f"key id:      {kid}")
        typer.echo(f"sign runs:   export {ENV}={private}")
        typer.echo(f"verify:      verifily reproduce --verify-only RUN --trusted-key {public}")
