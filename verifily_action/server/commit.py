"""What the server checks before a dataset version becomes visible, and the one transaction that makes it so.

The manifest is validated as `verifily dataset verify` validates one (the schema, paths inside the dataset folder),
its name and version must be the URL's, every file must have a sha256 and a row count, and every file's bytes are
read back from the store: their sha256 and their rows (counted as the loader counts them) must be the manifest's.
Only then are the version and its files inserted, in one transaction: a version in the table is complete.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..datasets.manifest import Manifest, load_manifest
from ..datasets.scaffold import count_rows
from ..errors import Problem, VerifilyError
from ..hashing import sha256_file
from .auth import Caller
from .blobs import BlobStore
from .models import DatasetFile, DatasetVersion, OrgBlob
from .names import has_nul


class Conflict(Exception):
    """The version exists with other contents (versions never change)."""


def parse_manifest(data: Any, name: str, version: str) -> Manifest:
    if not isinstance(data, dict) or has_nul(data):
        raise VerifilyError("the manifest must be a JSON object without NUL characters")
    with tempfile.TemporaryDirectory(prefix="verifily-manifest-") as tmp:
        path = Path(tmp) / "manifest.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        m = load_manifest(path)  # the schema, and every path relative and inside the folder
    if (m.name, m.version) != (name, version):
        raise VerifilyError(f"the manifest says it is {m.ref}, but it was pushed as {name}@{version}")
    missing = [f"{s}: {f.path}" for s, files in m.splits.items() for f in files if f.sha256 is None or f.rows is None]
    if missing:
        raise VerifilyError(
            f"files without a sha256 or row count: {', '.join(missing)}",
            hint=f"run `verifily dataset hash {name}@{version}` before pushing",
        )
    return m


def verify_files(m: Manifest, store: BlobStore, s: Session, org: str) -> None:
    problems: list[Problem] = []
    held = set(s.scalars(select(OrgBlob.sha256).where(OrgBlob.org == org)))
    for split, files in m.splits.items():
        for f in files:
            where = f"splits.{split}: {f.path}"
            path = store.local_path(str(f.sha256)) if f.sha256 in held else None
            if path is None:
                problems.append(Problem(f"{where}: no uploaded file with sha256 {f.sha256}"))
                continue
            got = sha256_file(path)
            if got != f.sha256:
                problems.append(Problem(f"{where}: the stored bytes hash to {got}, not {f.sha256}"))
                continue
            rows = count_rows(path, m.max_row_bytes)
            if rows != f.rows:
                problems.append(Problem(f"{where}: {rows} rows, the manifest says {f.rows}"))
    if problems:
        raise VerifilyError(
            f"{m.ref} was not committed: {len(problems)} file(s) do not match the manifest",
            hint="upload every file first (`verifily dataset push` does), and hash the manifest again if files changed",
            problems=problems,
        )


def commit_version(s: Session, caller: Caller, m: Manifest, store: BlobStore) -> tuple[DatasetVersion, bool]:
    """(the version row, whether it was created now). An identical version already there is returned as is."""
    found = find_version(s, caller.org, m.name, m.version)
    if found is not None:
        if found.dataset_hash != m.dataset_hash():
            raise Conflict(f"{m.ref} exists with dataset hash {found.dataset_hash}")
        return found, False
    verify_files(m, store, s, caller.org)
    row = DatasetVersion(
        org=caller.org,
        name=m.name,
        version=m.version,
        dataset_hash=m.dataset_hash(),
        manifest_json=json.dumps(m.data, ensure_ascii=False, sort_keys=False),
        created_at=datetime.now(timezone.utc),
        created_by=caller.token_id,
    )
    s.add(row)
    s.flush()
    for split, files in m.splits.items():
        for i, f in enumerate(files):
            s.add(DatasetFile(version_id=row.id, split=split, position=i, path=f.path, sha256=f.sha256, rows=f.rows))
    try:
        s.commit()
    except IntegrityError:  # pushed by someone else in the meantime
        s.rollback()
        return commit_version(s, caller, m, store)
    return row, True


def find_version(s: Session, org: str, name: str, version: str) -> DatasetVersion | None:
    q = select(DatasetVersion).where(
        DatasetVersion.org == org, DatasetVersion.name == name, DatasetVersion.version == version
    )
    return s.scalars(q).first()
