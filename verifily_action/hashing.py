"""Content hashes: sha256 of files (streamed, constant memory) and of JSON values in one canonical form.

Canonical JSON (used for config, manifest and hash-chain roots): `json.dumps(value, sort_keys=True,
separators=(",", ":"), ensure_ascii=False, allow_nan=False)` encoded as UTF-8. Floats use Python's shortest repr.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024  # large reads keep hashlib's C loop busy; 4 MiB measured faster than 64 KiB on big files


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (memory stays constant whatever the size). Only a regular file: a FIFO
    or device put in place of a data, model or run file is refused (VerifilyError), never read."""
    from .yamlsource import regular_only

    h = hashlib.sha256()
    with open(path, "rb", buffering=0, opener=regular_only) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_json(value: Any) -> str:
    """Hex sha256 of a JSON value in canonical form."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
