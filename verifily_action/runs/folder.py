"""A run folder as read from disk, and the moves that change it, each safe against a kill at any point: `load_run`,
`update_meta`, `finalize` (the `.partial` folder renamed once sealed), `copy_run` (through a hidden temporary
folder), `replace_run` (a sealed run changed as a whole) and `recover` (what a killed process left, finished or
undone). Callers hold the run's lock (`lock.run_lock`) around every move.

A sealed run is changed (eval adds its results and extends the chain) without ever showing a half-changed folder:
1. the run is copied beside itself as `.<name>.eval-<pid>` (hard links: no file of a sealed run is ever written in
   place, so the copy costs no space), and the change is made there: new eval folder, new hashes.json and run_meta.json;
2. the copy takes the run's place in one step, an atomic exchange of the two names (Linux `renameat2`
   RENAME_EXCHANGE); the old run, now under the hidden name, is deleted. Where the exchange is not available the
   run is first renamed `.<name>.old-<pid>` and the copy then renamed in, so a kill between the two leaves no run
   under the name but both complete folders beside it: `recover` puts the new one in place (the old one when the
   new one does not verify).
A kill in step 1 leaves the old run as it was and a hidden folder beside it; a kill after step 2 leaves the new run.
`recover` (train and eval call it first, under the lock) deletes every hidden leftover, and finishes a `.partial`
run that was sealed but not renamed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import VerifilyError
from .chain import verify_chain
from .files import read_json, write_json_atomic
from .layout import CONFIG, PARTIAL, RUN_META, final_dir_for, sibling, siblings

T = TypeVar("T")
Echo = Callable[[str], None]


@dataclass
class Run:
    """A run folder as read from disk."""

    dir: Path
    meta: dict[str, Any]
    config: Any  # config.TrainConfig

    @property
    def status(self) -> str:
        return str(self.meta.get("status"))

    @property
    def id(self) -> str:
        return str(self.meta.get("id"))


def load_run(path: str | Path, require_completed: bool = False) -> Run:
    """Read a run folder; VerifilyError when it is not one (or not completed, with `require_completed`)."""
    from ..config import from_dict
    from ..yamlsource import load_yaml

    d = Path(path)
    meta_path = d / RUN_META
    if not meta_path.is_file():
        partial = d.with_name(d.name + PARTIAL)
        hint = (
            f"{partial} holds an unfinished run; resume it with `verifily train --resume {partial}`"
            if partial.is_dir()
            else "give the folder of a run written by `verifily train` (it holds run_meta.json)"
        )
        raise VerifilyError(f"{d} is not a run folder (no {RUN_META})", hint=hint)
    try:
        meta = read_json(meta_path)
        cfg = from_dict(load_yaml(d / CONFIG, "run config"))
    except VerifilyError as e:  # config.yaml broken or hostile: the reader says where
        raise VerifilyError(
            f"{d}: cannot read the run's {CONFIG}", problems=e.problems, hint="the run folder is damaged; train again"
        ) from None
    except (OSError, ValueError, TypeError) as e:
        raise VerifilyError(f"{d}: cannot read the run: {e}", hint="the run folder is damaged; train again") from e
    if require_completed and meta.get("status") != "completed":
        err = meta.get("error")
        raise VerifilyError(
            f"run {d} is not completed (status {meta.get('status')!r})" + (f": {err}" if err else ""),
            hint=f"resume it with `verifily train --resume {d}` or train again",
        )
    return Run(d.resolve(), meta, cfg)


def update_meta(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into run_meta.json (atomically) and return the new document."""
    path = run_dir / RUN_META
    meta = read_json(path) if path.is_file() else {}
    meta.update(changes)
    write_json_atomic(path, meta)
    return meta


def _rename(src: Path, dst: Path) -> None:
    """os.rename: every move of a run goes through here (the crash tests stop a process at one of them)."""
    os.rename(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` atomically (Linux renameat2 with RENAME_EXCHANGE); False where the system or the
    file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def finalize(partial: Path) -> Path:
    """Move a completed `.partial` folder to its final name (replacing an older run of that name, for --force).
    A kill between the two renames leaves the sealed `.partial` and no final folder: `recover` finishes it."""
    final = final_dir_for(partial)
    if final == partial:
        return partial
    old = None
    if final.exists():
        old = sibling(final, "old", os.getpid())
        _remove(old)
        _rename(final, old)
    _rename(partial, final)
    if old is not None:
        _remove(old)
    return final


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def replace_run(run_dir: Path, change: Callable[[Path], T]) -> T:
    """Apply `change` to a copy of the sealed run `run_dir` made beside it, then put the copy in the run's place in
    one step (see the module docstring); returns what `change` returns. `change` gets the copy's path and must
    write only through atomic writes (files.write_text_atomic): the copy shares its unchanged files with the run."""
    final = Path(run_dir)
    stage = sibling(final, "eval", os.getpid())
    _remove(stage)
    try:
        shutil.copytree(final, stage, symlinks=True, copy_function=_link_or_copy)
        out = change(stage)
    except BaseException:
        _remove(stage)
        raise
    if _exchange(stage, final):
        _remove(stage)  # it holds the old run now
        return out
    old = sibling(final, "old", os.getpid())
    _remove(old)
    _rename(final, old)
    _rename(stage, final)
    _remove(old)
    return out


def copy_run(src: Path, dest: Path) -> Path:
    """Copy the run folder `src` to `dest` (which must not exist) through a hidden temporary folder beside it, so
    a reader never finds half a copy under the final name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(dest, "copy", os.getpid())
    _remove(tmp)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        _rename(tmp, dest)  # fails, rather than merging, if dest appeared meanwhile
    except BaseException:
        _remove(tmp)
        raise
    return dest


def _sealed(folder: Path) -> bool:
    """A completed run whose hash chain verifies."""
    try:
        meta = read_json(folder / RUN_META)
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("status") == "completed" and not verify_chain(folder)


def recover(final: Path, echo: Echo = print) -> Path | None:
    """Finish or undo what a killed process left of the run `final` (call it under the run's lock): a sealed
    `.partial` folder is renamed to `final` (returned); when a swap was cut between its two renames the new run
    (else the old one) is put back under the name; every hidden folder left beside the run is deleted."""
    final = Path(final)
    finished = None
    partial = final.with_name(final.name + PARTIAL)
    if partial.is_dir() and _sealed(partial):
        finalize(partial)
        echo(f"finished {final}: its run was sealed but not yet renamed from {partial.name} when its process stopped")
        finished = final
    left = siblings(final)
    if not final.exists():
        for kind in ("eval", "old"):  # the new run first
            found = [p for p in left if p.name.rsplit("-", 1)[0].endswith(f".{kind}") and _sealed(p)]
            if found:
                _rename(found[-1], final)
                echo(f"restored {final} from {found[-1].name}, left by a process stopped while changing the run")
                break
    for p in siblings(final):
        _remove(p)
    return finished
