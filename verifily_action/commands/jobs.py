"""`verifily submit --config C`, `verifily jobs list|show|logs|cancel` and `verifily usage`: train on a server's
runners instead of this machine (remote/jobs.py). `submit` prints the job id on stdout (with --wait, the fetched run
folder instead, as `train` prints it); progress, log lines and warnings go to stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ..errors import EXIT_GATE, EXIT_INTERRUPTED, VerifilyError

URL_HELP = "Server URL (default: $VERIFILY_SERVER, else the one `verifily login` saved)."
JOB_HELP = "The job's id (job_<16 hex>), as `submit` printed it."
FIELDS = (
    "id", "state", "dataset", "dataset_hash", "labels", "attempts", "max_attempts", "cancel_requested", "runner",
    "created_at", "started_at", "finished_at", "checkpoint_step", "run_id", "run_root_hash", "gpu_seconds",
    "wall_seconds", "billed_minutes", "error",
)  # fmt: skip


def register(app: typer.Typer) -> None:
    jobs = typer.Typer(help="Jobs queued on a Verifily server: list, show, logs, cancel.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")

    @app.command("submit")
    def submit(
        config: Path = typer.Option(..., "--config", "-c", help="The train config (YAML), checked here first."),
        server: str = typer.Option(None, "--server", help=URL_HELP + " A config's `server:` comes after both."),
        labels: str = typer.Option(
            None, "--labels", help="Comma-separated labels a runner must have all of, e.g. gpu,h100."
        ),
        wait: bool = typer.Option(
            False, "--wait", help="Follow the job's log until it ends, then fetch its run and print the folder."
        ),
        max_attempts: int = typer.Option(
            None, "--max-attempts", help="Leases the job may use before it fails (default: the server's)."
        ),
    ) -> None:
        """Queue a train job on a server's runners: the config is validated here (nothing is sent when it does not
        validate), the dataset versions it names are pushed if the server lacks them, then the job is queued."""
        from ..config import load_config
        from ..remote import jobs as rj
        from ..remote.client import Client

        echo = _err
        cfg = load_config(config)  # every problem with its file:line, before anything is sent
        wanted = rj.parse_labels(labels)
        rj.check_max_attempts(max_attempts)
        client = Client.connect(rj.server_for(server, cfg))
        rj.sync_datasets(cfg, client, echo)
        sub = rj.submit(client, config, wanted, max_attempts, echo=echo)
        job = sub.job
        for w in sub.warnings:
            echo(f"warning: {w}")
        state = "queued" if sub.created else f"already submitted ({job['state']})"
        said = f"job {job['id']} {state} on {client.url}: {job['dataset']}, labels {_labels(job)}"
        if not wait:
            echo(said)
            typer.echo(job["id"])
            return
        with _follow_only(job["id"]):  # from the line that names the job on, Ctrl-C leaves the job running
            echo(said)
            job = _follow(client, job["id"], log_out=True)
        if job["state"] != "completed":
            _ended(job)
        from ..remote.runs import fetch_run

        dest, fetched = fetch_run(client, job["run_root_hash"], Path(cfg.output_dir))
        how = "fetched and verified" if fetched else "already here (verified)"
        echo(f"run {job['run_id']} {how}: root {job['run_root_hash']}")
        typer.echo(str(dest))

    @jobs.command("list")
    def list_(
        state: str = typer.Option(
            None, "--state", help="Only jobs in this state: queued, running, completed, failed or cancelled."
        ),
        limit: int = typer.Option(None, "--limit", min=1, help="At most this many jobs (default: the server's)."),
        server: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """Your organization's jobs, newest first."""
        from ..remote import jobs as rj
        from ..remote.client import Client
        from .dataset import _table

        found = rj.list_jobs(Client.connect(server), state, limit)
        if not found:
            typer.echo("no jobs" + (f" in state {state}" if state else ""))
            return
        rows = [("id", "state", "dataset", "labels", "attempts", "created")]
        for j in found:
            rows.append((j["id"], _state(j), j["dataset"], _labels(j), _attempts(j), _when(j["created_at"])))
        _table(rows)

    @jobs.command("show")
    def show(
        job_id: str = typer.Argument(..., help=JOB_HELP),
        server: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """The job's state (queued, running, completed, failed, cancelled) and what it holds, one `key: value` a
        line."""
        from ..remote import jobs as rj
        from ..remote.client import Client

        job = rj.get_job(Client.connect(server), job_id)
        for key in FIELDS:
            value = job.get(key)
            if key == "labels":
                value = _labels(job)
            elif value is None:
                value = "-"
            typer.echo(f"{key}: {value}")

    @jobs.command("logs")
    def logs(
        job_id: str = typer.Argument(..., help=JOB_HELP),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
        server: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """The job's log (every attempt's lines, in order)."""
        from ..remote import jobs as rj
        from ..remote.client import Client

        client = Client.connect(server)
        if follow:
            with _follow_only(job_id):
                _follow(client, job_id, log_out=False)
            return
        printer = _LogPrinter(typer.echo)
        states = []
        for lines, state in rj.log_pages(client, job_id):
            states.append(state)
            for line in lines:
                printer(line)
        if printer.attempt is None:
            _err(f"{job_id}: no log lines yet ({states[-1]})")

    @jobs.command("cancel")
    def cancel(
        job_id: str = typer.Argument(..., help=JOB_HELP),
        server: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """Cancel a job: a queued one at once; a running one when its runner next reports (within seconds)."""
        from ..remote import jobs as rj
        from ..remote.client import Client

        job = rj.cancel(Client.connect(server), job_id)
        typer.echo(f"{job['id']}: {_state(job)}")

    @app.command("usage")
    def usage(
        month: str = typer.Option(None, "--month", help="YYYY-MM (default: this month, UTC)."),
        server: str = typer.Option(None, "--server", help=URL_HELP),
    ) -> None:
        """Completed jobs and GPU time billed this month (failed and cancelled jobs do not count)."""
        from ..remote import jobs as rj
        from ..remote.client import Client

        u = rj.usage(Client.connect(server), month)
        typer.echo(f"organization {u['org']}, {u['month']} (UTC), plan {u['plan']}")
        limit = f" of {u['free_jobs_per_month']} free" if u.get("managed") and u["plan"] == "free" else ""
        typer.echo(f"completed jobs: {u['completed_jobs']}{limit}")
        typer.echo(f"GPU time: {_num(u['gpu_seconds'])} s, billed {u['billed_minutes']} minute(s)")
        typer.echo(f"wall time: {_num(u['wall_seconds'])} s")


def _follow(client: Any, job_id: str, *, log_out: bool) -> dict[str, Any]:
    """Follow the job to its end: log lines on stderr (`submit --wait`) or stdout (`jobs logs --follow`), state
    changes on stderr."""
    from ..remote import jobs as rj

    printer = _LogPrinter(_err if log_out else typer.echo)
    said = ["queued"] if log_out else []  # `submit` has just said it is queued

    def on_state(job: dict[str, Any]) -> None:
        if said == [job["state"]]:
            return
        said[:] = [job["state"]]
        who = f" (attempt {job['attempts']}, runner {job['runner']})" if job["state"] == "running" else ""
        _err(f"job {job['id']}: {_state(job)}{who}")

    return rj.follow(client, job_id, printer, on_state)


@contextlib.contextmanager
def _follow_only(job_id: str) -> Iterator[None]:
    """Ctrl-C while following stops the following, not the job: exit 130 saying how to follow or cancel it."""
    try:
        yield
    except KeyboardInterrupt:
        raise VerifilyError(
            f"stopped following {job_id}; the job goes on on the server",
            hint=f"`verifily jobs logs {job_id} --follow` follows it again, `verifily jobs cancel {job_id}` stops it",
            exit_code=EXIT_INTERRUPTED,
        ) from None


def _ended(job: dict[str, Any]) -> None:
    """A job that ended without a run: failed (exit 1, its error) or cancelled (exit 130)."""
    jid = job["id"]
    if job["state"] == "failed":
        raise VerifilyError(
            f"job {jid} failed after {_attempts(job)} attempt(s): {job.get('error') or 'no error recorded'}",
            hint=f"`verifily jobs logs {jid}` prints its whole log",
            exit_code=EXIT_GATE,  # 1, as the contract says: the job ran and failed (not a usage error, 2)
        )
    raise VerifilyError(f"job {jid} was cancelled; no run was made", exit_code=EXIT_INTERRUPTED)


class _LogPrinter:
    """Prints log lines, with a `--- attempt N ---` line where a later attempt's lines begin."""

    def __init__(self, out: Any) -> None:
        self.out, self.attempt = out, None

    def __call__(self, line: dict[str, Any]) -> None:
        attempt = line.get("attempt")
        if self.attempt is not None and attempt != self.attempt:
            self.out(f"--- attempt {attempt} ---")
        self.attempt = attempt
        self.out(str(line.get("text", "")))


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _state(job: dict[str, Any]) -> str:
    if job.get("cancel_requested") and job["state"] == "running":
        return "running (cancel requested)"
    return str(job["state"])


def _labels(job: dict[str, Any]) -> str:
    return ",".join(job.get("labels") or []) or "-"


def _attempts(job: dict[str, Any]) -> str:
    return f"{job.get('attempts', 0)}/{job.get('max_attempts', '?')}"


def _when(iso: str | None) -> str:
    """An ISO-8601 UTC time as `2026-12-02 19:08:04` (the table's width), '-' when unset."""
    return iso.replace("T", " ")[:19] if iso else "-"


def _num(x: Any) -> str:
    return f"{float(x or 0):,.1f}"
