"""A run folder as read from disk, and the moves that finish it: `load_run`, `update_meta`, `finalize` (the
`.partial` folder renamed once sealed) and `copy_run` (through a hidden temporary folder)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from .files import read_json, write_json_atomic
from .layout import CONFIG, PARTIAL, RUN_META, final_dir_for


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


def finalize(partial: Path) -> Path:
    """Move a completed `.partial` folder to its final name (replacing an older run of that name, for --force)."""
    final = final_dir_for(partial)
    if final == partial:
        return partial
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def copy_run(src: Path, dest: Path) -> Path:
    """Copy the run folder `src` to `dest` (which must not exist) through a hidden temporary folder beside it, so
    a reader never finds half a copy under the final name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.copy-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        os.rename(tmp, dest)  # fails, rather than merging, if dest appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
