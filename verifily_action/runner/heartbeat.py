"""Keeping a lease: a thread that heartbeats every `heartbeat_seconds` (the server's number) from the moment a job is
leased until it is finished — through dataset downloads and run uploads too, which can outlast a lease — sending
the job's new log lines each time. It learns of a cancel (`cancelled`) and of a lost lease (`lost`, a 410); the
agent reads both between its own steps. A server that does not answer is tried again at the next beat, the lines
kept; the lease expiring meanwhile is the server's call (the next beat gets its 410).
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

from ..errors import VerifilyError
from .lease_client import Lease, LeaseLost, Unreachable

MAX_LINES = 1000  # per heartbeat; more wait for the next one
MAX_LINE_CHARS = 2000
STEP = re.compile(r"^step (\d+)/")  # train's progress lines (train/callbacks.py LogCallback)


class LogTail:
    """The lines appended to a file since the last read (a partial last line waits for its newline; a progress
    bar's carriage returns split lines too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.step: int | None = None

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *done, self.rest = (self.rest + data).replace(b"\r", b"\n").split(b"\n")
        lines = [b.decode("utf-8", errors="replace")[:MAX_LINE_CHARS] for b in done if b.strip()]
        for line in lines:
            if m := STEP.match(line):
                self.step = int(m[1])
        return lines

    def flush(self) -> list[str]:
        """Everything, the partial last line included (the writer is gone)."""
        lines = self.read()
        if self.rest.strip():
            lines.append(self.rest.decode("utf-8", errors="replace")[:MAX_LINE_CHARS])
        self.rest = b""
        return lines


class Heartbeat(threading.Thread):
    def __init__(self, lease: Lease, tail: LogTail) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{lease.id[:8]}")
        self.lease = lease
        self.tail = tail
        self.pending: list[str] = []
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.Lock()  # one beat at a time: the thread's, or the agent's last one

    def run(self) -> None:
        while not self._ended.wait(self.lease.heartbeat_seconds):
            self.beat()

    def beat(self, final: bool = False) -> None:
        with self._lock:
            if self.lost.is_set():
                return
            self.pending += self.tail.flush() if final else self.tail.read()
            while True:
                batch = self.pending[:MAX_LINES]
                try:
                    cancel = self.lease.heartbeat(batch, self.tail.step)
                except LeaseLost:
                    self.lost.set()
                    return
                except Unreachable as e:
                    print(f"heartbeat {self.lease.id[:8]}: {e.message}; trying again", file=sys.stderr)
                    return
                except VerifilyError as e:  # refused (a revoked token, a line the server will not take): not
                    # worth resending; the lease then runs out and the server requeues the job
                    print(f"heartbeat {self.lease.id[:8]}: {e.message}; {len(batch)} line(s) dropped", file=sys.stderr)
                    del self.pending[: len(batch)]
                    return
                del self.pending[: len(batch)]
                if cancel:
                    self.cancelled.set()
                if not final or not self.pending:
                    return

    def close(self) -> None:
        """Stop the thread, then send what is left of the log."""
        self._ended.set()
        if self.is_alive():
            self.join()
        self.beat(final=True)

    def halt(self) -> None:
        """Send nothing more under this lease (it was finished or lost)."""
        self.lost.set()
        self._ended.set()
