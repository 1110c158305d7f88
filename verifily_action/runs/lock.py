"""One process at a time per run: `run_lock` takes an flock on the run's lock file, `.<run name>.lock` beside the run
folder (`layout.lock_path`), so the `.partial` folder, the final one and the hidden folders on their way in or out
share one lock, and the lock file is never part of a run (nothing hashes or copies it).

Train, resume and eval hold it exclusively from before they look at the folder until they are done; a copy from the
run cache holds it shared (several copies at once, none while the run changes). A held lock is a user error naming
the holder (pid, host and what it is doing, written into the lock file by the holder), never a wait. The kernel drops
an flock when its process dies, so a killed run never leaves a stale lock.

The last holder deletes the file. A process that opened it just before may then hold a lock on a deleted file, so
after locking it checks that the path still names the file it locked, and tries again when not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import EXIT_USER, VerifilyError
from .layout import final_dir_for, lock_path


@dataclass
class _Held:
    fd: int
    shared: bool
    count: int = 1


# Locks this process holds, by lock file: taking one again (train copying its own run into the cache) nests.
_HELD: dict[str, _Held] = {}


def _holder(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, 4096, 0)
        doc = json.loads(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _busy(run: Path, path: Path, holder: dict[str, object]) -> VerifilyError:
    doing = holder.get("doing") or "using"
    pid = holder.get("pid") or "unknown"
    host = holder.get("host") or "unknown"
    return VerifilyError(
        f"another process is {doing} this run (pid {pid}, host {host}): {run}",
        hint=f"wait for it to end and run the command again; its lock ({path}) is released when that process exits",
        exit_code=EXIT_USER,
    )


def _open_locked(path: Path, run: Path, doing: str, shared: bool) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VerifilyError(
            f"cannot lock the run {run}: {e}", hint="the folder that holds the run must be writable"
        ) from e
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise VerifilyError(
                f"cannot lock the run {run}: {e}", hint="the folder that holds the run must be writable"
            ) from e
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise _busy(run, path, holder) from None
        st = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            break
        os.close(fd)  # the previous holder deleted it after we opened it: lock the new one
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "doing": doing,
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if shared and os.fstat(fd).st_size:
        return fd  # another copy holds it too and has said so already
    with contextlib.suppress(OSError):  # the holder's name is a courtesy: a full disk must not stop the run
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
    return fd


def _release(path: Path, held: _Held) -> None:
    try:
        # Delete the file only as its last holder: a shared holder first makes sure no one else holds it.
        if held.shared:
            fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(held.fd)
        now = os.stat(path)
        if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            path.unlink()
    except OSError:
        pass  # still held by another process, or already gone: it stays for them
    finally:
        os.close(held.fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, doing: str = "training", shared: bool = False) -> Iterator[Path]:
    """Hold the lock of the run `run_dir` (a `.partial` or final folder, which need not exist yet) for the block;
    yields the lock file's path. `doing` is what other processes are told this one is doing ("training",
    "evaluating", "copying"). A held lock raises VerifilyError (exit 2) naming its holder."""
    run = final_dir_for(Path(run_dir).resolve())
    path = lock_path(run)
    key = str(path)
    held = _HELD.get(key)
    if held is not None:
        if held.shared and not shared:
            raise RuntimeError(f"an exclusive lock of {run} asked for under a shared one")
        held.count += 1
        try:
            yield path
        finally:
            held.count -= 1
        return
    fd = _open_locked(path, run, doing, shared)
    held = _HELD[key] = _Held(fd, shared)
    try:
        yield path
    finally:
        del _HELD[key]
        _release(path, held)
