"""Load one split of a manifest into an Arrow-backed `datasets.Dataset`, verifying every file's sha256 first.

Rows are validated one at a time and streamed in record batches into an Arrow file in the datasets cache, which
`Dataset.from_file` memory-maps, so peak memory does not grow with the data. (We write the batches ourselves:
`Dataset.from_generator` encodes row by row and was ~5x slower.) The cache file is named by the files' *actual*
sha256 plus the field mapping, so a changed file is never served from a stale cache, and a second load of the same
data skips the parse.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file, sha256_json
from .manifest import CONTENT_ROLES, ROLES, FileEntry, Manifest
from .rows import MAX_SHOWN, Collector, RowSpec, file_problem, scan_file

log = logging.getLogger(__name__)

LOADER_VERSION = 2  # part of the cache key: bump when the canonical rows, their Arrow layout or the row checks change
BATCH_ROWS = 10_000  # rows per Arrow record batch: large enough to amortize, small enough to keep memory flat


@dataclass(frozen=True)
class VerifiedFile:
    entry: FileEntry
    path: Path
    actual_sha256: str
    ok: bool  # actual hash equals the manifest's


def display_path(manifest: Manifest, entry: FileEntry) -> str:
    """How a data file is named in messages: the manifest's folder joined with the entry's relative path."""
    return str(manifest.path.parent / entry.path)


def check_files(
    manifest: Manifest, split: str, verify: bool = True, allow_unhashed: bool = False
) -> list[VerifiedFile]:
    """Hash every file of `split`; with `verify`, refuse mismatches and (unless `allow_unhashed`) missing hashes,
    in one error listing all."""
    out, problems = [], []
    for entry in manifest.require_split(split):
        path = manifest.file_path(entry)
        shown = display_path(manifest, entry)
        why = file_problem(path)
        if why is not None:
            problems.append(Problem(why, file=shown))
            continue
        actual = sha256_file(path)
        ok = entry.sha256 == actual
        if not ok and verify and not (allow_unhashed and entry.sha256 is None):
            if entry.sha256 is None:
                problems.append(
                    Problem(
                        "no sha256 in the manifest",
                        file=shown,
                        hint=f"run `verifily dataset hash {manifest.path}` to record it",
                    )
                )
            else:
                problems.append(
                    Problem(
                        f"sha256 mismatch: the manifest says {entry.sha256}, the file is {actual}",
                        file=shown,
                        hint="the file changed since it was hashed: restore it, or make a new dataset version "
                        "and run `verifily dataset hash` on it",
                    )
                )
        out.append(VerifiedFile(entry, path, actual, ok))
    if problems:
        raise VerifilyError(
            f"dataset {manifest.ref} split {split!r}: {len(problems)} file{'s' * (len(problems) != 1)} failed "
            "verification",
            problems=problems,
        )
    return out


def merge_fields(manifest: Manifest, fields: dict[str, str | None] | None) -> dict[str, str | None]:
    """The manifest's role -> key mapping with `fields` laid over it (None values keep the manifest's)."""
    merged = dict(manifest.fields)
    for role, key in (fields or {}).items():
        if role not in ROLES:
            raise VerifilyError(f"unknown field role {role!r}", hint=f"roles: {', '.join(ROLES)}")
        if key is not None:
            merged[role] = key
    return merged


def row_spec(manifest: Manifest, fields: dict[str, str | None] | None = None) -> RowSpec:
    return RowSpec(
        fields=merge_fields(manifest, fields), tag_keys=tuple(manifest.tag_keys), max_row_bytes=manifest.max_row_bytes
    )


def check_not_empty(manifest: Manifest, split: str, col: Collector, first_file: int = 0) -> None:
    """A split with no rows at all (every file empty) is a problem, named at its first file: training on it has
    nothing to learn and evaluating it nothing to measure. `first_file`: the collector's index of the split's first
    file (one collector may scan several splits)."""
    counts = col.file_rows[first_file:]
    if counts and None not in counts and sum(c or 0 for c in counts) == 0:
        entries = manifest.require_split(split)
        files = f" (its {len(entries)} files are empty)" if len(entries) > 1 else ""
        col.add(
            f"split {split!r} has no rows{files}",
            display_path(manifest, entries[0]),
            hint=f"add rows to it, or remove the split from {manifest.path}",
        )


def raise_problems(manifest: Manifest, split: str, col: Collector) -> None:
    if col.total:
        shown = f" (first {MAX_SHOWN} shown)" if col.total > len(col.problems) else ""
        raise VerifilyError(
            f"dataset {manifest.ref} split {split!r}: {col.total} problem{'s' * (col.total != 1)} in its rows{shown}",
            hint="fix the rows listed (file:line); `verifily dataset verify` reports them all",
            problems=list(col.problems),
            omitted=col.total - len(col.problems),
        )


def features_for(spec: RowSpec):
    from datasets import Features, Value

    feats: dict[str, Any] = {"id": Value("string")}
    for role in CONTENT_ROLES:
        if spec.fields.get(role):
            feats[role] = Value("string")
    feats["tags"] = {k: Value("string") for k in spec.tag_keys}
    return Features(feats)


def load_split(
    manifest: Manifest,
    split: str,
    fields: dict[str, str | None] | None = None,
    verify: bool = True,
):
    """Verify `split`'s files, validate every row and return a memory-mapped `datasets.Dataset` with the canonical
    columns `id`, `tags` (every tag key -> str or None) and whichever of text/prompt/response/label are mapped.
    An empty split, or a file whose row count differs from the manifest's, is refused like an invalid row.

    `verify=False` loads files whose sha256 differs from the manifest (the caller must record that the data was
    unverified); row validation always runs.
    """
    import datasets

    checked = check_files(manifest, split, verify=verify)
    for vf in checked:
        if not vf.ok:
            log.warning(
                "UNVERIFIED DATA: %s sha256 is %s, manifest says %s", vf.path, vf.actual_sha256, vf.entry.sha256
            )
    spec = row_spec(manifest, fields)
    features = features_for(spec)
    key = sha256_json(
        {
            "loader": LOADER_VERSION,
            "content": [vf.actual_sha256 for vf in checked],
            "rows": [_expected_rows(vf) for vf in checked],  # a cached copy passed these counts, not any others
            "max_row_bytes": spec.max_row_bytes,
            "fields": spec.fields,
            "tag_keys": list(spec.tag_keys),
            "features": features.to_dict(),
        }
    )
    path = _cache_dir() / f"{key}.arrow"
    if not path.is_file():
        _write_arrow(manifest, split, checked, spec, features, path)
    return datasets.Dataset.from_file(str(path), split=split)


def _expected_rows(vf: VerifiedFile) -> int | None:
    """The manifest's row count of a file, when it is to be checked: not when its hash differs (the count is then
    one more symptom of the same change, loaded on purpose with verify=False)."""
    return vf.entry.rows if vf.ok else None


def _cache_dir() -> Path:
    """Under the datasets cache; the variable is read at call time so a test's (or a job's) setting applies."""
    import datasets

    base = os.environ.get("HF_DATASETS_CACHE") or str(datasets.config.HF_DATASETS_CACHE)
    return Path(base) / "verifily_rows"


def _write_arrow(
    manifest: Manifest, split: str, checked: list[VerifiedFile], spec: RowSpec, features, path: Path
) -> None:
    """Validate every row and stream them into an Arrow IPC file in batches (the format `Dataset.from_file`
    memory-maps). Written under a temporary name and renamed, so a failed or concurrent load never leaves a
    partial cache file; nothing is kept when any row is invalid."""
    import pyarrow as pa

    schema = features.arrow_schema
    columns = list(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    col = Collector()
    batch: dict[str, list[Any]] = {c: [] for c in columns}
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for vf in checked:
                shown = display_path(manifest, vf.entry)
                for _line, row in scan_file(vf.path, shown, spec, col, _expected_rows(vf)):
                    if col.total:  # the load will fail; keep scanning only to report every problem
                        continue
                    for c in columns:
                        batch[c].append(row[c])
                    if len(batch["id"]) >= BATCH_ROWS:
                        writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
                        batch = {c: [] for c in columns}
            if batch["id"] and not col.total:
                writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
        check_not_empty(manifest, split, col)
        col.check_duplicate_ids()
        raise_problems(manifest, split, col)
        for w in col.warnings:
            log.warning(w.render())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
