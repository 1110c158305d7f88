"""Summaries of one dataset version (`dataset info`) and of the change between two (`dataset diff`, by example id).

Both stream the rows through the same validator as loading (`rows.scan_file`); invalid rows are an error here too.
`diff` first checks the files' hashes against both manifests (a file without a recorded hash passes: it is
still being drafted). It keeps one small tuple per row id of version A in memory (fine for the millions of rows a
manifest names; larger data would sort both sides on disk instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..hashing import canonical_json, sha256_bytes
from ..tags import tag_value
from .loading import check_files, display_path, raise_problems, row_spec
from .manifest import Manifest
from .rows import Collector, scan_file

MAX_IDS = 10  # example ids listed per change kind


def iter_rows(manifest: Manifest, split: str) -> Iterator[dict[str, Any]]:
    """Canonical rows of a split (not hash-verified); raises one VerifilyError listing every invalid row."""
    spec = row_spec(manifest)
    col = Collector()
    for entry in manifest.require_split(split):
        for _line, row in scan_file(manifest.file_path(entry), display_path(manifest, entry), spec, col):
            if not col.total:
                yield row
    col.check_duplicate_ids()
    raise_problems(manifest, split, col)


def dataset_info(manifest: Manifest) -> dict[str, Any]:
    """Rows per split, per tag value (rows lacking a key counted under `(none)`) and per label."""
    from ..hashing import sha256_file

    splits: dict[str, Any] = {}
    for split, entries in manifest.splits.items():
        tags: dict[str, Counter[str]] = {k: Counter() for k in manifest.tag_keys}
        labels: Counter[str] = Counter()
        n = 0
        for row in iter_rows(manifest, split):
            n += 1
            for k in manifest.tag_keys:
                tags[k][tag_value(row["tags"], k)] += 1
            if "label" in row:
                labels[row["label"]] += 1
        files = []
        for e in entries:
            actual = sha256_file(manifest.file_path(e))
            files.append({"path": e.path, "sha256": e.sha256, "rows": e.rows, "verified": actual == e.sha256})
        splits[split] = {
            "rows": n,
            "files": files,
            "tags": {k: dict(sorted(c.items())) for k, c in tags.items()},
            "labels": dict(sorted(labels.items())),
        }
    return {
        "schema_version": 1,
        "ref": manifest.ref,
        "name": manifest.name,
        "version": manifest.version,
        "parent": manifest.parent,
        "task": manifest.task,
        "description": manifest.description,
        "manifest": str(manifest.path),
        "dataset_hash": manifest.dataset_hash(),
        "fields": manifest.fields,
        "tag_keys": manifest.tag_keys,
        "splits": splits,
    }


def _fingerprint(row: dict[str, Any]) -> dict[str, str]:
    """Short hashes of each part of a row, so `changed` can say what changed without keeping the text."""
    return {k: sha256_bytes(canonical_json(v))[:12] for k, v in row.items() if k != "id"}


def dataset_diff(a: Manifest, b: Manifest, split: str | None = None) -> dict[str, Any]:
    """Rows added, removed and changed from `a` to `b` per split (matched by id), also per tag value.
    `split` limits the row comparison to that split (both versions must have it)."""
    if split is not None:
        a.require_split(split)
        b.require_split(split)
    out: dict[str, Any] = {
        "schema_version": 1,
        "a": a.ref,
        "b": b.ref,
        "a_hash": a.dataset_hash(),
        "b_hash": b.dataset_hash(),
        "splits_only_in_a": [s for s in a.splits if s not in b.splits],
        "splits_only_in_b": [s for s in b.splits if s not in a.splits],
        "splits": {},
    }
    tag_keys = list(dict.fromkeys([*a.tag_keys, *b.tag_keys]))
    for s in [s for s in a.splits if s in b.splits and split in (None, s)]:
        out["splits"][s] = _diff_split(a, b, s, tag_keys)
    return out


def _diff_split(a: Manifest, b: Manifest, split: str, tag_keys: list[str]) -> dict[str, Any]:
    for m in (a, b):  # a diff of files that changed since hashing would describe data no run used
        check_files(m, split, allow_unhashed=True)
    old: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for row in iter_rows(a, split):
        old[row["id"]] = (_fingerprint(row), {k: tag_value(row["tags"], k) for k in tag_keys})
    counts: Counter[str] = Counter()
    changed_parts: Counter[str] = Counter()
    by_tag: dict[str, dict[str, Counter[str]]] = {k: {} for k in tag_keys}
    ids: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}

    def note(kind: str, row_id: str, tags: dict[str, str]) -> None:
        counts[kind] += 1
        if kind != "unchanged" and len(ids[kind]) < MAX_IDS:
            ids[kind].append(row_id)
        for k, v in tags.items():
            by_tag[k].setdefault(v, Counter())[kind] += 1

    for row in iter_rows(b, split):
        tags = {k: tag_value(row["tags"], k) for k in tag_keys}
        before = old.pop(row["id"], None)
        if before is None:
            note("added", row["id"], tags)
            continue
        fp = _fingerprint(row)
        parts = sorted(k for k in set(fp) | set(before[0]) if fp.get(k) != before[0].get(k))
        if parts:
            changed_parts.update(parts)
            note("changed", row["id"], tags)
        else:
            note("unchanged", row["id"], tags)
    for row_id, (_fp, tags) in old.items():
        note("removed", row_id, tags)
    kinds = ("added", "removed", "changed", "unchanged")
    return {
        **{k: counts[k] for k in kinds},
        "changed_fields": dict(sorted(changed_parts.items())),
        "by_tag": {
            k: {v: {kind: c[kind] for kind in kinds} for v, c in sorted(vals.items())} for k, vals in by_tag.items()
        },
        "example_ids": ids,
    }
