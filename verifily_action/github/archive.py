"""Zip a run folder for upload, and extract a downloaded artifact without trusting it.

An artifact from another workflow run (or a fork's run, in the comment job) is untrusted input. `safe_extract`
checks every member before writing anything: no absolute paths or drive letters, no `..` escaping the target, no
member naming the target itself (`.`), no name that is both a file and a folder (or a file twice), no symbolic
links (a zip stores them as members whose Unix mode is S_IFLNK), no encrypted members, no more than `max_files`
members, no more than `max_total` bytes uncompressed in all, and no member compressing better than `max_ratio`
(the mark of a zip bomb). The sizes in the central directory are only claims: a compressed size is checked against
where the member's data really lies (it must end before the next member begins, and no two members may share
data), and the uncompressed bytes are counted while writing, against the member's claim and the total. Every
problem, however the archive is broken, is an UnsafeArchive.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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
    if not parts:
        raise UnsafeArchive(f"refusing archive member {name!r}: it names the target folder itself")
    target = (dest / name).resolve()
    if not target.is_relative_to(dest) or target == dest:
        raise UnsafeArchive(f"refusing archive member {name!r}: it resolves outside the target folder")
    return target


# what zipfile raises on archives that are well-formed enough to open but not to read: CRC errors, truncation,
# unknown methods, bad deflate streams, encrypted data, names that are not UTF-8, impossible header fields
_BROKEN = (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError, zlib.error, struct.error)
_LOCAL = struct.Struct("<4s22xHH")  # a local file header: signature, ..., name length, extra length (30 bytes)


def _check_layout(f: BinaryIO, members: list[zipfile.ZipInfo], end: int) -> None:
    """The compressed sizes the central directory claims, checked against where the data lies: a member's data
    must end before the next member's header (or the central directory) begins, and no two members may share
    bytes. A bigger claim is how a zip bomb hides its ratio (and overlapping members are how it multiplies it)."""
    starts = sorted({m.header_offset for m in members} | {end})
    if len(starts) <= len(members):
        raise UnsafeArchive("refusing the archive: two members share their data (a zip bomb?)")
    for m in members:
        f.seek(m.header_offset)
        head = f.read(_LOCAL.size)
        if len(head) < _LOCAL.size or _LOCAL.unpack(head)[0] != b"PK\x03\x04":
            raise UnsafeArchive(f"archive member {m.filename!r} cannot be read: no local header at its offset")
        _, name_len, extra_len = _LOCAL.unpack(head)
        room = starts[starts.index(m.header_offset) + 1] - (m.header_offset + _LOCAL.size + name_len + extra_len)
        if m.compress_size > room:
            raise UnsafeArchive(
                f"refusing archive member {m.filename!r}: its header claims {m.compress_size:,} compressed bytes "
                f"where {max(room, 0):,} fit (a zip bomb hiding its ratio?)"
            )


def _plan(
    members: list[zipfile.ZipInfo], dest: Path, max_total: int, max_ratio: float
) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Every member's name, kind and claimed sizes checked, before anything is written."""
    total = 0
    plan: list[tuple[zipfile.ZipInfo, Path]] = []
    files: set[Path] = set()
    folders: set[Path] = set()
    for m in members:
        mode = m.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchive(f"refusing archive member {m.filename!r}: it is a symbolic link")
        if m.flag_bits & 0x41:  # traditional (bit 0) or strong (bit 6) encryption
            raise UnsafeArchive(f"refusing archive member {m.filename!r}: it is encrypted")
        target = _member_target(dest, m.filename)
        folders.update(p for p in target.parents if p.is_relative_to(dest) and p != dest)
        plan.append((m, target))
        if m.is_dir():
            folders.add(target)
            continue
        if target in files:
            raise UnsafeArchive(f"refusing archive member {m.filename!r}: the archive holds it twice")
        files.add(target)
        total += m.file_size
        if total > max_total:
            raise UnsafeArchive(f"archive expands to more than {max_total:,} bytes")
        if m.compress_size and m.file_size / m.compress_size > max_ratio:
            raise UnsafeArchive(
                f"refusing archive member {m.filename!r}: compression ratio "
                f"{m.file_size / m.compress_size:.0f}x exceeds {max_ratio:.0f}x (a zip bomb?)"
            )
    both = sorted(files & folders)
    if both:
        name = both[0].relative_to(dest).as_posix()
        raise UnsafeArchive(f"refusing archive member {name!r}: the archive holds it as a file and as a folder")
    return plan


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
    except (*_BROKEN, OSError) as e:
        raise UnsafeArchive(f"not a readable zip archive: {e}") from None
    with zf:
        members = zf.infolist()
        if len(members) > max_files:
            raise UnsafeArchive(f"archive has {len(members):,} members; at most {max_files:,} are allowed")
        plan = _plan(members, dest, max_total, max_ratio)
        with open(zip_path, "rb") as f:
            _check_layout(f, members, zf.start_dir)
        budget = max_total  # counted again while writing: the claims are checked, the bytes are what counts
        written: list[Path] = []
        for m, target in plan:
            try:
                if m.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                budget = _extract(zf, m, target, budget, max_total)
            except _BROKEN as e:
                raise UnsafeArchive(f"archive member {m.filename!r} cannot be read: {e}") from None
            except OSError as e:
                raise UnsafeArchive(f"archive member {m.filename!r} cannot be written: {e.strerror or e}") from None
            written.append(target)
    return written


def _extract(zf: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path, budget: int, limit: int) -> int:
    """Write one member, counting its bytes: more than its header claims, or than the archive's budget, is
    refused. Returns the budget left."""
    got = 0
    with zf.open(m) as src, open(target, "wb") as out:
        while block := src.read(CHUNK):
            got += len(block)
            budget -= len(block)
            if got > m.file_size:
                raise UnsafeArchive(f"archive member {m.filename!r} is larger than its header says")
            if budget < 0:
                raise UnsafeArchive(f"archive expands to more than {limit:,} bytes (a zip bomb?)")
            out.write(block)
    return budget
