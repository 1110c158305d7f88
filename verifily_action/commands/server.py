"""`verifily server [init]`, `verifily login URL`, `verifily token create|revoke`: run the Verifily server and hold
its tokens. FastAPI, Uvicorn and SQLAlchemy are imported only when one of these runs."""

from __future__ import annotations

import typer

from ..server.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_STORE,
    FREE_JOBS_PER_MONTH,
    LEASE_TTL_SECONDS,
    RATE_LIMIT_PER_MINUTE,
)

DB_HELP = "Database URL: sqlite:///PATH, or postgresql://USER@HOST:PORT/DB (default: sqlite in <store>/verifily.db)."
STORE_HELP = "Folder for the content-addressed blobs (and the default SQLite file)."
URL_HELP = "Server URL (default: $VERIFILY_SERVER, else the one `verifily login` saved)."


def register(app: typer.Typer) -> None:
    server = typer.Typer(
        help="Run the Verifily server: datasets shared by name@version, tokens per organization.",
        invoke_without_command=True,
        rich_markup_mode=None,
    )
    app.add_typer(server, name="server")
    token = typer.Typer(help="API tokens of a Verifily server (needs an admin token).", no_args_is_help=True)
    app.add_typer(token, name="token")

    @server.callback()
    def run(
        ctx: typer.Context,
        db: str = typer.Option(None, "--db", help=DB_HELP),
        store: str = typer.Option(DEFAULT_STORE, "--store", help=STORE_HELP),
        host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on."),
        rate_limit: int = typer.Option(
            RATE_LIMIT_PER_MINUTE, "--rate-limit", help="Requests per token per rolling minute (429 past it)."
        ),
        managed: bool = typer.Option(
            False,
            "--managed",
            help=f"Managed mode (a hosted service): organizations on the free plan may run {FREE_JOBS_PER_MONTH} "
            "jobs a month.",
        ),
        lease_ttl: float = typer.Option(
            LEASE_TTL_SECONDS, "--lease-ttl", help="Seconds a runner's job lease lives past its last heartbeat."
        ),
    ) -> None:
        """Serve the API (run `verifily server init` once first)."""
        if ctx.invoked_subcommand is not None:
            ctx.obj = {"db": db, "store": store}
            return
        from ..server.serve import serve

        serve(db, store, host, port, rate_limit, managed, lease_ttl)

    @server.command("init")
    def init(
        ctx: typer.Context,
        db: str = typer.Option(None, "--db", help=DB_HELP),
        store: str = typer.Option(None, "--store", help=STORE_HELP),
    ) -> None:
        """Create or migrate the database; the first time, print the first admin token (shown once)."""
        from ..server.serve import init as do_init

        parent = ctx.obj or {}
        res = do_init(db or parent.get("db"), store or parent.get("store") or DEFAULT_STORE)
        state = "created" if res.before is None else ("up to date" if res.before == res.after else "migrated")
        typer.echo(f"database {res.url}: {state} (revision {res.after})")
        if res.token:
            typer.echo(f"admin token (shown once, keep it secret): {res.token}")
            typer.echo("next: `verifily server`, then `verifily login URL` with this token")

    @app.command("login")
    def login(
        url: str = typer.Argument(..., help="The server, e.g. http://127.0.0.1:8080"),
        token_text: str = typer.Option(
            None, "--token", help="The token (default: $VERIFILY_TOKEN, else read from stdin)."
        ),
    ) -> None:
        """Check a token against the server and save it (mode 0600) as this server's, and the default server."""
        import os
        import sys

        from ..remote.client import Client
        from ..remote.credentials import ENV_TOKEN, normalize, save

        base = normalize(url)
        text = token_text or os.environ.get(ENV_TOKEN) or sys.stdin.readline().strip()
        who = Client(base, text).call("GET", "/api/v1/whoami")
        path = save(base, text)
        typer.echo(f"logged in to {base} as token {who['token']} ({who['scope']}, organization {who['org']})")
        typer.echo(f"saved in {path} (mode 600)")

    @token.command("create")
    def create(
        org: str = typer.Option(..., "--org", help="The organization the token acts in."),
        scope: str = typer.Option(..., "--scope", help="read, write, admin, or runner (a job runner's: leases only)."),
        url: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """Make a token (printed once: the server keeps only its hash)."""
        from ..remote.client import Client
        from ..server.names import check_org, check_scope

        client = Client.connect(url)
        got = client.call("POST", "/api/v1/tokens", json={"org": check_org(org), "scope": check_scope(scope)})
        typer.echo(got["token"])
        typer.echo(f"token {got['id']}: {got['scope']} in {got['org']} (shown once)", err=True)

    @token.command("revoke")
    def revoke(
        token_id: str = typer.Argument(..., help="The token's id (the part after vf_, before the next _)."),
        url: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """Revoke a token: every request with it is refused from now on."""
        from ..remote.client import Client

        Client.connect(url).call("DELETE", f"/api/v1/tokens/{token_id}")
        typer.echo(f"revoked {token_id}")
