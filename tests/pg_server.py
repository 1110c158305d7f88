"""A throwaway PostgreSQL server for the server tests: Debian's `postgresql` package (installed with apt-get when
missing and this is root, as tests/container/start_dockerd.sh installs docker.io), `initdb` in a temporary folder,
`postgres` on 127.0.0.1 at a free port, trust authentication for the one role `verifily`, stopped and deleted by
`stop`. PostgreSQL refuses to run as root: as root the cluster belongs to the system user `postgres` (created when
missing) and every command runs through `runuser`.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.debian import apt_install

ROLE = "verifily"
SYSTEM_USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH, in /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def ensure_installed() -> Path | None:
    """The binaries, installing Debian's `postgresql` when missing and possible (root); None when impossible."""
    if (found := bin_dir()) is not None:
        return found
    return bin_dir() if apt_install("postgresql") else None


@dataclass
class Postgres:
    bin: Path
    folder: Path
    port: int
    as_user: list[str]  # the command prefix: [] or runuser -u postgres --

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, cwd=self.folder, check=False
        )

    def create_database(self, name: str) -> str:
        proc = self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, name)
        assert proc.returncode == 0, proc.stderr
        return self.url(name)

    def stop(self) -> None:
        if self.data.is_dir():  # once: the fixture's teardown, else the atexit hook
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def _system_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", SYSTEM_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
    return ["runuser", "-u", SYSTEM_USER, "--"]


def start() -> Postgres:
    """initdb + pg_ctl start; raises RuntimeError (with PostgreSQL's log) when it cannot."""
    found = ensure_installed()
    if found is None:
        raise RuntimeError("PostgreSQL is not installed and cannot be (not root, or no apt-get)")
    as_user = _system_user()
    folder = Path(tempfile.mkdtemp(prefix="verifily-pg-"))
    if as_user:
        shutil.chown(folder, SYSTEM_USER, SYSTEM_USER)
    pg = Postgres(found, folder, free_port(), as_user)
    init = pg.run("initdb", "-D", str(pg.data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-locale")
    if init.returncode != 0:
        pg.stop()
        raise RuntimeError(f"initdb failed: {init.stderr}")
    # -F: no fsync (a test cluster); -k: the socket in our folder, not /var/run/postgresql
    options = f"-h 127.0.0.1 -p {pg.port} -k {folder} -F"
    started = pg.run("pg_ctl", "-D", str(pg.data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start")
    if started.returncode != 0:
        log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
        pg.stop()
        raise RuntimeError(f"postgres did not start: {started.stderr}\n{log}")
    atexit.register(pg.stop)  # a test run that dies before its fixture's teardown still stops the cluster
    return pg


@pytest.fixture(scope="module")
def postgres():
    """A cluster per test module (a pytest plugin: tests/conftest.py); skipped where PostgreSQL is missing and this is
    not root to install it (as root a failed start is an error)."""
    try:
        pg = start()
    except RuntimeError as e:
        if os.geteuid() == 0:
            raise
        pytest.skip(f"no PostgreSQL here and not root to install it: {e}")
    yield pg
    pg.stop()
