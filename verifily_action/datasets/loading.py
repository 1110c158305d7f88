"""Load one split of a manifest into an Arrow-backed `datasets.Dataset`, verifying every file's sha256 first.

The rows are written by `Dataset.from_generator` into an Arrow file in the datasets cache and memory-mapped, so
peak memory does not grow with the data. The cache is keyed by the files' *actual* sha256 plus the field mapping,
so a changed file can never be served from a stale cache, and a second load of the same data skips the parse.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file
from .manifest import CONTENT_ROLES, ROLES, FileEntry, Manifest
from .rows import MAX_SHOWN, Collector, RowSpec, scan_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedFile:
    entry: FileEntry
    path: Path
    actual_sha256: str
    ok: bool  # actual hash equals the manifest's


def display_path(manifest: Manifest, entry: FileEntry) -> str:
    """How a data file is named in messages: the manifest's folder joined with the entry's relative path."""
    return str(manifest.path.parent / entry.path)


def check_files(manifest: Manifest, split: str, verify: bool = True) -> list[VerifiedFile]:
    """Hash every file of `split`; with `verify`, refuse missing hashes and mismatches (one error listing all)."""
    out, problems = [], []
    for entry in manifest.require_split(split):
        path = manifest.file_path(entry)
        shown = display_path(manifest, entry)
        if not path.is_file():
            problems.append(Problem("file not found" if not path.exists() else "not a regular file", file=shown))
            continue
        actual = sha256_file(path)
        ok = entry.sha256 == actual
        if not ok and verify:
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
    return RowSpec(fields=merge_fields(manifest, fields), tag_keys=tuple(manifest.tag_keys))


def raise_problems(manifest: Manifest, split: str, col: Collector) -> None:
    if col.total:
        shown = f" (first {MAX_SHOWN} shown)" if col.total > len(col.problems) else ""
        raise VerifilyError(
            f"dataset {manifest.ref} split {split!r}: {col.total} problem{'s' * (col.total != 1)} in its rows{shown}",
            hint="fix the rows listed (file:line); `verifily dataset verify` reports them all",
            problems=list(col.problems),
        )


def _generate(
    files: list[tuple[str, str]], spec: RowSpec, ref: str, split: str, content: list[str]
) -> Iterator[dict[str, Any]]:
    # A module-level generator: `datasets` fingerprints it and gen_kwargs (`content`: the files' actual sha256)
    # to name the cache file, so the cache is keyed by content.
    col = Collector()
    for i, (path, shown) in enumerate(files):
        for _line, row in scan_file(Path(path), shown, spec, col, file_index=i):
            if not col.total:  # once a row is bad the load fails; keep scanning only to report everything
                yield row
    col.check_duplicate_ids()
    if col.total:
        raise _RowsInvalid(col)
    for w in col.warnings:
        log.warning(w.render())


class _RowsInvalid(Exception):
    def __init__(self, col: Collector) -> None:
        super().__init__(f"{col.total} row problems")
        self.col = col


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

    `verify=False` loads files whose sha256 differs from the manifest (the caller must record that the data was
    unverified); row validation always runs.
    """
    import datasets

    checked = check_files(manifest, split, verify=verify)
    for vf in checked:
        if not vf.ok:
            log.warning("UNVERIFIED DATA: %s sha256 is %s, manifest says %s", vf.path, vf.actual_sha256, vf.entry.sha256)
    spec = row_spec(manifest, fields)
    files = [(str(vf.path), display_path(manifest, vf.entry)) for vf in checked]
    gen_kwargs = {
        "files": files,
        "spec": spec,
        "ref": manifest.ref,
        "split": split,
        "content": [vf.actual_sha256 for vf in checked],
    }
    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_generator(
            _generate, features=features_for(spec), gen_kwargs=gen_kwargs, split=split
        )
    except Exception as e:  # noqa: BLE001 - unwrap our own error from datasets' DatasetGenerationError
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, _RowsInvalid):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, _RowsInvalid):
            raise_problems(manifest, split, cause.col)
        raise
    finally:
        if bars:
            datasets.enable_progress_bars()
    return ds
