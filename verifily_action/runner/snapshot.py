"""A resumable snapshot of a training run: the `.partial` folder as a tar.gz with only its newest complete
checkpoint (`pack`), and back (`unpack`, refusing any member that would land outside the runs folder).

The child keeps training while a snapshot is made: the chosen checkpoint is complete (its trainer_state.json reads)
and is not rotated away until two newer ones exist (save_total_limit 2); the run's other files are written
atomically or appended, and a file that vanishes mid-pack fails this snapshot only (the next one is tried later).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from ..errors import VerifilyError
from ..runs.layout import PARTIAL, is_scratch
from ..train.job import CHECKPOINTS

COMPRESSLEVEL = 1  # checkpoints are mostly float tensors: gzip hardly shrinks them, so spend little time on it


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def pack(partial: Path, checkpoint: Path, dest: Path) -> Path:
    """Write `dest`: `partial` (members named `<run>.partial/...`) with `checkpoint` as its only checkpoint, and no
    scratch files."""
    top = partial.name
    keep = f"{top}/{CHECKPOINTS}/{checkpoint.name}"

    def member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = info.name
        inside = f"{top}/{CHECKPOINTS}/"
        if name.startswith(inside) and not (name == keep or name.startswith(keep + "/")):
            return None
        if is_scratch(name[len(top) + 1 :]) or info.issym() or info.islnk():
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=COMPRESSLEVEL) as tar:
        tar.add(partial, arcname=top, filter=member)
    tmp.replace(dest)
    return dest


def unpack(archive: Path, runs: Path) -> Path:
    """Extract a snapshot under `runs`; returns the run's `.partial` folder."""
    runs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or not next(iter(tops)).endswith(PARTIAL):
            raise VerifilyError(f"{archive}: not a run snapshot (top-level entries {sorted(tops)[:5]})")
        top = next(iter(tops))
        if (runs / top).exists():
            raise VerifilyError(f"{runs / top} exists; the snapshot is unpacked into a fresh job folder only")
        tar.extractall(runs, filter="data")  # the data filter refuses absolute paths, `..`, links out, devices
    return runs / top
