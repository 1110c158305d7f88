"""The blob store: files by sha256, behind one small interface (`BlobStore`). `LocalBlobStore` keeps them on disk
as `<root>/blobs/ab/<sha256>`; an upload in progress is `<root>/uploads/<org>/<sha256>`, appended chunk by chunk
(so it resumes at its size) and moved into place only after its bytes hash to its name."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Protocol

from ..hashing import sha256_file


class HashMismatch(Exception):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"the uploaded bytes hash to {got}, not {expected}")
        self.expected, self.got = expected, got


class OffsetMismatch(Exception):
    def __init__(self, have: int) -> None:
        super().__init__(f"the upload is at byte {have}")
        self.have = have


class BlobStore(Protocol):
    def has(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def local_path(self, sha256: str) -> Path | None: ...
    def upload_offset(self, org: str, sha256: str) -> int: ...
    def append(self, org: str, sha256: str, offset: int, data: bytes) -> int: ...
    def finish(self, org: str, sha256: str) -> int: ...
    def discard(self, org: str, sha256: str) -> None: ...


class LocalBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(parents=True, exist_ok=True)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def _staging(self, org: str, sha256: str) -> Path:
        return self.root / "uploads" / org / sha256

    def _lock(self, org: str, sha256: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((org, sha256), threading.Lock())

    def has(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return open(self._blob(sha256), "rb")

    def local_path(self, sha256: str) -> Path | None:
        p = self._blob(sha256)
        return p if p.is_file() else None

    def upload_offset(self, org: str, sha256: str) -> int:
        p = self._staging(org, sha256)
        return p.stat().st_size if p.is_file() else 0

    def append(self, org: str, sha256: str, offset: int, data: bytes) -> int:
        """Write `data` at `offset`, which must be where the upload stands; returns the new size."""
        with self._lock(org, sha256):
            p = self._staging(org, sha256)
            p.parent.mkdir(parents=True, exist_ok=True)
            have = p.stat().st_size if p.is_file() else 0
            if offset != have:
                raise OffsetMismatch(have)
            with open(p, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return have + len(data)

    def finish(self, org: str, sha256: str) -> int:
        """Hash the staged bytes; move them into the store when they match `sha256` (else delete them and raise
        HashMismatch: nothing is stored). Returns the size."""
        with self._lock(org, sha256):
            p = self._staging(org, sha256)
            if not p.is_file():  # an empty file is uploaded by no chunk at all
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            got = sha256_file(p)
            if got != sha256:
                p.unlink(missing_ok=True)
                raise HashMismatch(sha256, got)
            size = p.stat().st_size
            dest = self._blob(sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_file():
                p.unlink()
            else:
                os.replace(p, dest)  # same file system: atomic, so a reader never sees a partial blob
            return size

    def discard(self, org: str, sha256: str) -> None:
        with self._lock(org, sha256):
            self._staging(org, sha256).unlink(missing_ok=True)
