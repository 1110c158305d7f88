"""Atomic writes, and a full disk told as what it is.

Every JSON or text file of a run is written to a temporary name in its folder (`.<name>.<random>.tmp`, a scratch
file `layout.is_scratch` leaves out of every check), fsynced and moved into place with `os.replace`, so a reader (or
a crash) never sees half a file. A write that fails for lack of space records how many bytes it needed
(`OSError.needed`); `disk_full_error` turns such an error, from here or from a library (torch, safetensors), into
the user error it is: what could not be written, how much it needed when known, how much is free.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import EXIT_USER, VerifilyError
from .layout import RESERVE, TEMP_SUFFIX

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries word a full disk when they do not raise an OSError: Rust's io::Error (safetensors, tokenizers) and
# the OS message itself.
FULL_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
# torch.save on a full disk raises a RuntimeError from its zip writer without the OS error ("unexpected pos ...");
# it is taken for a full disk only when the disk is in fact (nearly) full.
TORCH_WRITER = ("inline_container", "PytorchStreamWriter")
NEARLY_FULL = 64 * 1024 * 1024
RESERVE_BYTES = 1024 * 1024


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, then `os.replace` (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            e.needed = len(data)  # type: ignore[attr-defined]
            e.filename = e.filename or str(path)
        raise


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log file (train_log.jsonl); a full disk raises like any write here."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:
        if e.errno in FULL_ERRNOS:
            e.needed = len(line.encode("utf-8")) + 1  # type: ignore[attr-defined]
            e.filename = e.filename or str(path)
        raise


def read_json(path: Path) -> Any:
    """A run's JSON file; a FIFO or device in its place is refused, never read (it would block or never end)."""
    from ..yamlsource import regular_only

    with open(path, encoding="utf-8", opener=regular_only) as f:
        return json.load(f)


# ---------------------------------------------------------------- a full disk


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the device holding `path` (or its nearest existing parent); None when it cannot be told."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not x for x in out):
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def is_disk_full(exc: BaseException, where: str | Path | None = None) -> bool:
    """Whether `exc` (or an exception it was raised from) means the disk or the user's quota is full. `where`: a
    path on the device written to, to recognise torch's wordless writer error by the free space left there."""
    for e in _chain(exc):
        if isinstance(e, VerifilyError):
            continue
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        text = str(e)
        if any(t in text for t in FULL_TEXTS):
            return True
        if where is not None and isinstance(e, RuntimeError) and any(t in text for t in TORCH_WRITER):
            free = free_bytes(where)
            if free is not None and free < NEARLY_FULL:
                return True
    return False


def size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def disk_full_error(exc: BaseException, where: str | Path, what: str = "", needed: int | None = None) -> VerifilyError:
    """The user error for a full disk: which file (the one the OS names, else `where`), how much it needed when
    known, how much is free; exit 2."""
    path = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename), None) or str(where)
    if needed is None:
        needed = next((getattr(e, "needed", None) for e in _chain(exc) if getattr(e, "needed", None)), None)
    free = free_bytes(path)
    sizes = []
    if needed is not None:
        sizes.append(f"it needs {size_text(needed)}")
    if free is not None:
        sizes.append(f"{size_text(free)} free there")
    detail = f" ({', '.join(sizes)})" if sizes else ""
    quota = any(isinstance(e, OSError) and e.errno == errno.EDQUOT for e in _chain(exc))
    reason = "Disk quota exceeded" if quota else "No space left on device"
    return VerifilyError(
        f"disk full: cannot write {path}{' (' + what + ')' if what else ''}: {reason}{detail}",
        hint="free space on that disk (or write the run elsewhere with --output-dir) and run the command again",
        exit_code=EXIT_USER,
    )


def reserve_space(folder: Path) -> None:
    """Hold RESERVE_BYTES in `folder` (a scratch file), so that a run that fills the disk can still record that
    it failed: `release_space` frees it first."""
    path = folder / RESERVE
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * RESERVE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        with contextlib.suppress(OSError):
            path.unlink()
        if e.errno in FULL_ERRNOS:
            e.needed = RESERVE_BYTES  # type: ignore[attr-defined]
            e.filename = e.filename or str(path)
        raise


def release_space(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / RESERVE).unlink()
