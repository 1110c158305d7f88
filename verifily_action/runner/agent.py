"""The runner's loop: lease a job, prepare its folder, train it in a child, and report how it ended.

While the child trains, a heartbeat thread keeps the lease and sends the log; the loop (every TICK seconds) watches
for the child's exit, a cancel, a lost lease, a stop request (SIGTERM/SIGINT) and a new complete checkpoint, which
it uploads as a snapshot. Outcomes: exit 0 → the run's files uploaded and `completed`; exit 2 (a user error: bad
config, missing model) → `failed`, not retried, the log's last lines as the error; any other exit → `failed` with
a retry; cancel → the child stopped, `cancelled`; lost lease (410) → the child killed, the job dropped (the server
has requeued or cancelled it); stop → the child checkpoints (a second signal: killed at once), that checkpoint
is uploaded, `released`, and the runner exits 0. A job's failure never stops the runner, nor does a server that
does not answer (retried with backoff); a refused token does (exit 2).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, EXIT_USER, VerifilyError
from ..runs.layout import PARTIAL
from . import snapshot, workspace
from .child import Child
from .heartbeat import Heartbeat, LogTail
from .lease_client import Lease, LeaseLost, RunnerClient, Unreachable, lease, retrying

TICK = 0.2  # how often the loop looks at the child, the heartbeat's news and the checkpoints
CHECKPOINT_LOOK_SECONDS = 1.0
STOP_GRACE_SECONDS = 300.0  # SIGTERM: the child finishes its step and saves (the deploy files allow 600 s in all)
CANCEL_GRACE_SECONDS = 3.0  # a cancel needs no checkpoint; it must reach `cancelled` within 10 s
ERROR_LINES = 40


@dataclass
class Options:
    server: str
    token: str
    labels: list[str]
    max_jobs: int | None
    work_dir: Path
    name: str  # "" for default_name()
    poll: float


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Agent:
    def __init__(self, opts: Options, log: Callable[[str], None] | None = None) -> None:
        from .devices import detect

        self.opts = opts
        self.name = opts.name or default_name()
        self.client = RunnerClient(opts.server, opts.token)
        self.devices = detect()
        self.stopping = False
        self.hurry = False
        self.log = log or (lambda s: print(f"runner {self.name}: {s}", file=sys.stderr, flush=True))

    def _stop(self, signum: int, frame: Any) -> None:
        if self.stopping:  # a second Ctrl-C / SIGTERM: no waiting for a checkpoint
            self.hurry = True
        self.stopping = True

    def run(self) -> int:
        """Lease and run jobs until --max-jobs or a stop signal; 0 then. A refused token raises (exit 2)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        workspace.claim(self.opts.work_dir)  # held until the process ends
        labels = sorted(set(self.opts.labels))
        self.log(f"serving {self.client.url} with labels [{','.join(labels)}] and {self.devices}")
        done = 0
        while not self.stopping and (self.opts.max_jobs is None or done < self.opts.max_jobs):
            try:
                got = retrying(
                    lambda: lease(self.client, self.name, labels, self.devices), "lease", self.log, self._stopped
                )
            except Unreachable:
                break  # stopping while the server was away
            if got is None:
                self._sleep(self.opts.poll)
                continue
            self.run_job(got)
            done += 1
        self.log(f"exiting after {done} job(s)")
        return 0

    def _stopped(self) -> bool:
        return self.stopping

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(TICK, max(end - time.monotonic(), 0)))

    def run_job(self, got: dict[str, Any]) -> str:
        """One leased job, start to finish; returns how it ended (an outcome, or "dropped")."""
        job, info = got["job"], got["lease"]
        lease = Lease(self.client, str(info["id"]), float(info.get("heartbeat_seconds") or 5))
        folder = workspace.folder_for(self.opts.work_dir, job)
        tag = f"job {job['id']} attempt {job['attempt']}"
        self.log(
            f"{tag}: leased" + (f", resuming at step {job['checkpoint']['step']}" if job.get("checkpoint") else "")
        )
        hb = Heartbeat(lease, LogTail(folder / workspace.LOG))
        hb.start()
        run = _Attempt(self, lease, job, folder, hb, tag)
        try:
            outcome = run.go()
        except LeaseLost:
            outcome = "dropped"
        except Exception as e:  # noqa: BLE001 - one job's bug must not stop the runner
            outcome = run.report("failed", error=f"runner error: {type(e).__name__}: {e}", retry=True)
        finally:
            hb.halt()
            if run.child is not None:
                run.child.kill()
            shutil.rmtree(folder, ignore_errors=True)
        self.log(
            f"{tag}: {outcome}" + (" (the lease was lost; the server has the job)" if outcome == "dropped" else "")
        )
        return outcome


class _Attempt:
    def __init__(self, agent: Agent, lease: Lease, job: dict[str, Any], folder: Path, hb: Heartbeat, tag: str):
        self.agent, self.lease, self.job, self.folder, self.hb, self.tag = agent, lease, job, folder, hb, tag
        self.started = time.monotonic()
        self.child: Child | None = None
        self.uploaded = (job.get("checkpoint") or {}).get("step")

    def retry(self, fn: Callable[[], Any], what: str) -> Any:
        return retrying(fn, f"{self.tag}: {what}", self.agent.log, self.hb.lost.is_set)

    def go(self) -> str:
        def fresh() -> list[str]:
            shutil.rmtree(self.folder, ignore_errors=True)
            return workspace.prepare(self.lease, self.job, self.folder)

        try:
            argv = self.retry(fresh, "fetching its data")
        except Unreachable:
            raise LeaseLost("the lease ended while the server was unreachable") from None
        except VerifilyError as e:
            return self.report(
                "failed", error=f"preparing the job on runner {self.agent.name}: {e.message}", retry=True
            )
        if self.hb.cancelled.is_set():
            return self.report("cancelled")
        if self.agent.stopping:
            return self.report("released")
        self.child = child = Child(argv, self.folder, self.folder / workspace.LOG, self.folder / workspace.OUT)
        self.agent.log(f"{self.tag}: training in process {child.pid}")
        looked = 0.0
        while (code := child.wait(TICK)) is None:
            if self.hb.lost.is_set():
                return "dropped"
            if self.hb.cancelled.is_set():
                child.stop(CANCEL_GRACE_SECONDS)
                return self.report("cancelled")
            if self.agent.stopping:
                if child.stop(STOP_GRACE_SECONDS, lambda: self.agent.hurry) == 0:
                    return self.ended(0)  # it finished meanwhile: report the run, not a release
                self.checkpoint()
                return self.report("released")
            if time.monotonic() - looked >= CHECKPOINT_LOOK_SECONDS:
                self.checkpoint()
                looked = time.monotonic()
        return self.ended(code)

    def ended(self, code: int) -> str:
        out = self.folder / workspace.OUT
        printed = out.read_text(encoding="utf-8", errors="replace").strip() if out.is_file() else ""
        if printed:  # stdout into the job's log too, after stderr
            with open(self.folder / workspace.LOG, "a", encoding="utf-8") as f:
                f.write(printed + "\n")
        if code == 0:
            from ..remote.runs import send_run_files

            run_dir = Path(printed.splitlines()[-1]) if printed else None
            if run_dir is None or not run_dir.is_dir():
                return self.report("failed", error=f"train exited 0 without a run folder ({printed!r})", retry=True)
            try:
                root, files, _ = self.retry(
                    lambda: send_run_files(run_dir, self.lease.client, self.lease.prefix), "uploading the run"
                )
            except Unreachable:
                raise LeaseLost("the lease ended while the server was unreachable") from None
            except VerifilyError as e:
                return self.report("failed", error=e.message, retry=True)
            return self.report("completed", files=files, root_hash=root)
        if code == EXIT_INTERRUPTED and self.agent.stopping:
            self.checkpoint()
            return self.report("released")
        return self.report("failed", error=self.error_lines(code), retry=code != EXIT_USER)

    def error_lines(self, code: int) -> str:
        lines = LogTail(self.folder / workspace.LOG).flush()[-ERROR_LINES:]
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return "\n".join([*lines, f"(train {how} on runner {self.agent.name})"])

    def checkpoint(self) -> None:
        """Upload the newest complete checkpoint if it is newer than the last one uploaded."""
        from ..train import trainlog
        from ..train.job import CHECKPOINTS

        partial = next((self.folder / workspace.RUNS).glob(f"*{PARTIAL}"), None)
        found = trainlog.last_checkpoint(partial / CHECKPOINTS) if partial is not None else None
        if partial is None or found is None or snapshot.checkpoint_step(Path(found)) == self.uploaded:
            return
        step = snapshot.checkpoint_step(Path(found))
        archive = self.folder / f"checkpoint-{step}.tar.gz"
        try:
            snapshot.pack(partial, Path(found), archive)
            sha = self.lease.send_file(archive)
            self.lease.put_checkpoint(sha, step)
        except (OSError, Unreachable) as e:  # a file rotated away mid-pack, or no answer: the next look tries again
            self.agent.log(f"{self.tag}: checkpoint at step {step} not uploaded yet ({e})")
            return
        finally:
            archive.unlink(missing_ok=True)
        self.uploaded = step
        self.agent.log(f"{self.tag}: checkpoint at step {step} uploaded")

    def report(self, outcome: str, **body: Any) -> str:
        """Send the rest of the log, then finish the lease with `outcome`."""
        self.hb.close()
        if self.hb.lost.is_set():
            return "dropped"
        body["wall_seconds"] = round(time.monotonic() - self.started, 3)
        try:
            self.retry(lambda: self.lease.finish(outcome, **body), f"reporting {outcome}")
        except Unreachable:
            return "dropped"
        return outcome
