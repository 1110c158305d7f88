"""A real Verifily server for tests: `verifily server init` then `verifily server` as a subprocess (Uvicorn on
127.0.0.1 at a free port), waited for on /health, stopped (or killed, for the fault tests) by the test."""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .paths import REPO
from .pg_server import free_port

TOKEN = re.compile(r"vf_[0-9a-f]{16}_[A-Za-z0-9_-]+")


@dataclass
class Server:
    db: str
    store: Path
    admin_token: str
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> Server:
        self.port = free_port()
        self.store.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.store.parent / f"server-{self.port}.log", "wb")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "verifily_action.cli", "server", "--db", self.db, "--store", str(self.store)]
            + ["--port", str(self.port), *extra],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        atexit.register(self.kill)  # never outlives the test run, whatever stops it
        deadline = time.monotonic() + 120  # start-up wait, not a measurement
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /health: {self.log()}")

    def log(self) -> str:
        return (self.store.parent / f"server-{self.port}.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or an OOM kill would stop it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def init_server(db: str, store: Path) -> Server:
    proc = subprocess.run(
        [sys.executable, "-m", "verifily_action.cli", "server", "init", "--db", db, "--store", str(store)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    m = TOKEN.search(proc.stdout)
    assert m, proc.stdout
    return Server(db, store, m[0])


def init_on(request, tmp_path_factory, name: str) -> Server:
    """`verifily server init` on the database a fixture parameter names: `sqlite` (a file beside the store) or
    `postgresql` (database `name` on the module's `postgres` cluster, tests/pg_server.py)."""
    store = tmp_path_factory.mktemp(f"{name}-{request.param}") / "store"
    if request.param == "sqlite":
        return init_server(f"sqlite:///{store.parent / 'verifily.db'}", store)
    return init_server(request.getfixturevalue("postgres").create_database(name), store)
