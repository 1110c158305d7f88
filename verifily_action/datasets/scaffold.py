"""Write manifests: `init` scaffolds one from JSONL files (inferring field roles and tag keys), `hash` records
each file's sha256 and row count.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file
from ..schemas import load_schema
from .manifest import MANIFEST_NAMES, SCHEMA, FileEntry, Manifest, find_manifest, load_manifest
from .rows import _BOM, file_problem, iter_lines

SAMPLE_ROWS = 1000  # rows read per file to infer fields: enough to see every key of a consistent file


def count_rows(path: Path, max_row_bytes: int | None = None) -> int:
    """Rows of a JSONL file: its non-blank lines, as the loader counts them (streamed; a line longer than
    `max_row_bytes` counts as a row without being held in memory)."""
    n = 0
    with open(path, "rb") as f:
        for _, line, _size in iter_lines(f, max_row_bytes):
            if line is None or (line.strip() and line.strip() != _BOM):
                n += 1
    return n


def _unreadable(manifest_dir: Path, paths: list[tuple[str, Path]]) -> list[Problem]:
    return [Problem(why, file=str(manifest_dir / rel)) for rel, p in paths if (why := file_problem(p)) is not None]


def hash_manifest(manifest: Manifest, write: bool = True) -> tuple[Manifest, list[tuple[str, FileEntry, FileEntry]]]:
    """Recompute every file's sha256 and row count; write them into the manifest file. Returns the new manifest and
    `(split, old, new)` for every entry."""
    from .manifest import dump_manifest

    files = [(e.path, manifest.file_path(e)) for entries in manifest.splits.values() for e in entries]
    missing = _unreadable(manifest.path.parent, files)
    if missing:
        raise VerifilyError(
            f"cannot hash {manifest.ref}: {len(missing)} file(s) missing or not regular files", problems=missing
        )
    changes, splits = [], {}
    for split, entries in manifest.splits.items():
        new_entries = []
        for e in entries:
            p = manifest.file_path(e)
            ne = FileEntry(e.path, sha256_file(p), count_rows(p, manifest.max_row_bytes))
            new_entries.append(ne)
            changes.append((split, e, ne))
        splits[split] = new_entries
    new = manifest.with_files(splits)
    if write:
        dump_manifest(new)
    return new, changes


_ROLE_CANDIDATES = {
    "id": ("id", "uid", "example_id", "guid", "idx"),
    "text": ("text", "sentence", "content", "input", "document"),
    "prompt": ("prompt", "instruction", "question", "source"),
    "response": ("response", "output", "answer", "completion", "target"),
    "label": ("label", "labels", "class", "category", "sentiment"),
    "tags": ("tags", "meta_tags"),
}


def infer(
    files: list[Path], sample: int = SAMPLE_ROWS, max_row_bytes: int | None = None
) -> tuple[dict[str, str], list[str], str | None]:
    """Guess `fields`, `tag_keys` and `task` from the first rows of each file (rows over `max_row_bytes` skipped)."""
    keys: Counter[str] = Counter()
    tag_keys: set[str] = set()
    for path in files:
        with open(path, "rb") as f:
            for i, (_, line, _size) in enumerate(iter_lines(f, max_row_bytes)):
                if i >= sample:
                    break
                if line is None:
                    continue
                try:
                    row = json.loads(line.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue  # `dataset verify` reports bad lines; a scaffold only needs the good ones
                if isinstance(row, dict):
                    keys.update(row.keys())
                    if isinstance(row.get("tags"), dict):
                        tag_keys.update(row["tags"])
    fields: dict[str, str] = {}
    for role, names in _ROLE_CANDIDATES.items():
        for n in names:
            if n in keys and n not in fields.values():
                fields[role] = n
                break
    if "tags" not in fields:
        tag_keys.clear()
    if "prompt" in fields and "response" in fields:
        task: str | None = "sft"
    elif "text" in fields and "label" in fields:
        task = "classification"
    else:
        task = None
    return fields, sorted(tag_keys), task


def init_manifest(
    folder: Path,
    name: str | None = None,
    version: str | None = None,
    files: dict[str, list[str]] | None = None,
    force: bool = False,
) -> Manifest:
    """Write `<folder>/manifest.yaml` for the JSONL files in it (split = file stem unless `files` says), hashed."""
    import yaml

    folder = Path(folder)
    if not folder.is_dir():
        raise VerifilyError(f"folder not found: {folder}", hint="create it and put the JSONL files in it")
    existing = find_manifest(folder)
    if existing and not force:
        raise VerifilyError(f"{existing} already exists", hint="pass --force to overwrite it")
    if files is None:
        found = sorted(folder.glob("*.jsonl"))
        if not found:
            raise VerifilyError(f"no *.jsonl files in {folder}", hint="put the split files (e.g. train.jsonl) there")
        files = {p.stem: [p.name] for p in found}
    paths = [(f, folder / f) for fs in files.values() for f in fs]
    unreadable = _unreadable(folder, paths)
    if unreadable:  # before anything is written
        raise VerifilyError(f"cannot scaffold {folder}: {len(unreadable)} file(s) cannot be read", problems=unreadable)
    cap = load_schema(SCHEMA)["properties"]["max_row_bytes"]["default"]
    fields, tag_keys, task = infer([p for _, p in paths], max_row_bytes=cap)
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": name or folder.resolve().parent.name,
        "version": version or folder.resolve().name,
        "parent": None,
        "description": "",
        "task": task,
        "fields": fields,
        "tag_keys": tag_keys,
        "splits": {s: {"files": [{"path": f, "sha256": None, "rows": None} for f in fs]} for s, fs in files.items()},
        "provenance": "",
        "license": "",
    }
    out = folder / MANIFEST_NAMES[0]
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    manifest, _ = hash_manifest(load_manifest(out))
    return manifest
