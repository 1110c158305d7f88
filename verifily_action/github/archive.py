"""Zip a run folder for upload, and extract a downloaded artifact without trusting it.

An artifact from another workflow run (or a fork's run, in the comment job) is untrusted input. `safe_extract`
checks every member before writing anything: no absolute paths or drive letters, no `..` escaping the target,
no symbolic links (a zip stores them as members whose Unix mode is S_IFLNK), no more than `max_files` members,
no more than `max_total` bytes uncompressed in all, and no member compressing better than `max_ratio` (the mark
of a zip bomb). Sizes are enforced while writing too, because the sizes in the central directory are only claims.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import VerifilyError

MAX_TOTAL = 2 * 1024**3  # a run folder with a LoRA adapter is tens of MB; 2 GiB leaves room for big adapters
MAX_FILES = 10_000
MAX_RATIO = 200  # JSONL compresses ~10x; 200x is only reached by crafted data
CHUNK = 1024 * 1024


class UnsafeArchive(VerifilyError):
    pass


@dataclass
class ZipInfo:
    path: Path
    size: int
    sha256: str
    files: int


def zip_dir(root: str | Path, zip_path: str | Path, extra: dict[str, bytes] | None = None) -> ZipInfo:
    """Zip every regular file under `root` (paths relative to it); symlinks are skipped, never followed.
    `extra` adds small generated files at the archive's root."""
    root = Path(root)
    zip_path = Path(zip_path)
    n = 0
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                if full.is_symlink() or not full.is_file() or full.resolve() == zip_path.resolve():
                    continue
                zf.write(full, full.relative_to(root).as_posix())
                n += 1
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
            n += 1
    h = hashlib.sha256()
    with open(zip_path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return ZipInfo(zip_path, zip_path.stat().st_size, h.hexdigest(), n)


def _member_target(dest: Path, name: str) -> Path:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"refusing archive member {name!r}: absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UnsafeArchive(f"refusing archive member {name!r}: it climbs out of the target folder")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest):
        raise UnsafeArchive(f"refusing archive member {name!r}: it resolves outside the target folder")
    return target


def safe_extract(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_total: int = MAX_TOTAL,
    max_files: int = MAX_FILES,
    max_ratio: float = MAX_RATIO,
) -> list[Path]:
    """Check every member, then extract; returns the files written. Raises UnsafeArchive on the first problem."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UnsafeArchive(f"not a readable zip archive: {e}") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_files:
            raise UnsafeArchive(f"archive has {len(members):,} members; at most {max_files:,} are allowed")
        total = 0
        plan: list[tuple[zipfile.ZipInfo, Path]] = []
        for m in members:
            mode = m.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchive(f"refusing archive member {m.filename!r}: it is a symbolic link")
            target = _member_target(dest, m.filename)
            if m.is_dir():
                plan.append((m, target))
                continue
            total += m.file_size
            if total > max_total:
                raise UnsafeArchive(f"archive expands to more than {max_total:,} bytes")
            if m.compress_size and m.file_size / m.compress_size > max_ratio:
                raise UnsafeArchive(
                    f"refusing archive member {m.filename!r}: compression ratio "
                    f"{m.file_size / m.compress_size:.0f}x exceeds {max_ratio:.0f}x (a zip bomb?)"
                )
            plan.append((m, target))
        written: list[Path] = []
        budget = max_total
        for m, target in plan:
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            declared = m.file_size
            try:
                with zf.open(m) as src, open(target, "wb") as out:
                    got = 0
                    while block := src.read(CHUNK):
                        got += len(block)
                        budget -= len(block)
                        if got > declared or budget < 0:
                            raise UnsafeArchive(f"archive member {m.filename!r} is larger than its header says")
                        out.write(block)
            except (zipfile.BadZipFile, EOFError, NotImplementedError) as e:  # CRC errors, truncation, odd methods
                raise UnsafeArchive(f"archive member {m.filename!r} cannot be read: {e}") from None
            written.append(target)
    return written
