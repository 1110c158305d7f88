"""The dataset manifest: load and validate it (schemas/dataset.schema.json), type it, hash it, write it back.

A manifest names one version of a dataset: its splits, the hashed JSONL files holding each split (paths relative to
the manifest), how row keys map to roles (`fields`), the tag keys rows carry and where the data came from. Every
problem found while loading is reported at once with file:line:col, like the train config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import yamlsource
from ..errors import MAX_PROBLEMS_SHOWN, Problem, VerifilyError
from ..hashing import sha256_json
from ..schemas import load_schema, validator

SCHEMA = "dataset.schema.json"
MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")
ROLES = ("id", "text", "prompt", "response", "label", "chosen", "rejected", "tags")
CONTENT_ROLES = ("text", "prompt", "response", "label", "chosen", "rejected")  # the roles that become canonical columns
# dpo's roles appear in a manifest's `fields` only when mapped, so every other dataset's hash stays as it was
PAIR_ROLES = ("chosen", "rejected")

# Roles used when a manifest has no `fields`: id and tags always, plus what the task needs.
TASK_ROLES: dict[str | None, tuple[str, ...]] = {
    "classification": ("text", "label"),
    "sft": ("prompt", "response"),
    "seq2seq": ("prompt", "response"),
    "pretrain": ("text",),
    "dpo": ("prompt", "chosen", "rejected"),
    None: ("text",),
}


@dataclass(frozen=True)
class FileEntry:
    """One JSONL file of a split: its path relative to the manifest folder, its sha256 and row count (None before
    `verifily dataset hash` has run)."""

    path: str
    sha256: str | None = None
    rows: int | None = None


@dataclass
class Manifest:
    """A loaded, schema-valid manifest. `fields` maps role -> row key (None: role unused)."""

    name: str
    version: str
    parent: str | None
    path: Path
    dir: Path
    task: str | None
    fields: dict[str, str | None]
    tag_keys: list[str]
    splits: dict[str, list[FileEntry]]
    description: str = ""
    provenance: str = ""
    license: str = ""
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # the document as written (for rewriting)
    source: yamlsource.Source | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def identity(self) -> dict[str, Any]:
        """What the dataset hash covers: everything that changes what a loader returns. Description, provenance,
        license and the task hint are documentation, so editing them keeps the hash."""
        return {
            "schema_version": 1,
            "name": self.name,
            "version": self.version,
            "parent": self.parent,
            "fields": self.fields,
            "tag_keys": self.tag_keys,
            "splits": {
                s: [{"path": f.path, "sha256": f.sha256, "rows": f.rows} for f in files]
                for s, files in sorted(self.splits.items())
            },
        }

    def dataset_hash(self) -> str:
        """sha256 over the canonical JSON of `identity()`, which holds every file's sha256."""
        return sha256_json(self.identity())

    def file_path(self, entry: FileEntry) -> Path:
        """The absolute path of a file entry, refusing paths that leave the manifest's folder."""
        return safe_path(self, entry.path)

    def split_names(self) -> list[str]:
        return list(self.splits)

    @property
    def max_row_bytes(self) -> int:
        """The longest row the loader accepts (the schema's default unless the manifest sets it)."""
        default = load_schema(SCHEMA)["properties"]["max_row_bytes"]["default"]
        return int(self.data.get("max_row_bytes", default))

    def require_split(self, split: str) -> list[FileEntry]:
        if split not in self.splits:
            raise VerifilyError(
                f"dataset {self.ref} has no split {split!r}",
                hint=f"its splits: {', '.join(self.splits) or '(none)'} (in {self.path})",
            )
        return self.splits[split]

    def with_files(self, splits: dict[str, list[FileEntry]]) -> Manifest:
        """A copy with new file entries (used by `dataset hash`)."""
        data = json.loads(json.dumps(self.data))
        for s, files in splits.items():
            data["splits"][s]["files"] = [{"path": f.path, "sha256": f.sha256, "rows": f.rows} for f in files]
        return _build(data, self.path, None)


def default_fields(task: str | None) -> dict[str, str | None]:
    roles = ("id", "tags", *TASK_ROLES.get(task, TASK_ROLES[None]))
    return {r: (r if r in roles else None) for r in ROLES if r in roles or r not in PAIR_ROLES}


def find_manifest(folder: Path) -> Path | None:
    """The manifest file of a version folder. Anything by that name counts (a pipe or a folder named manifest.yaml
    is then refused by the reader with a clear error, rather than reported as no manifest at all)."""
    for n in MANIFEST_NAMES:
        if os.path.lexists(folder / n):
            return folder / n
    return None


def load_manifest(path: str | Path) -> Manifest:
    """Load `path` (a manifest file, or a folder holding manifest.yaml/.json), validate it and type it."""
    p = Path(path)
    if p.is_dir():
        found = find_manifest(p)
        if found is None:
            raise VerifilyError(
                f"no manifest in folder {p}",
                hint=f"expected one of {', '.join(MANIFEST_NAMES)}; `verifily dataset init {p}` scaffolds one",
            )
        p = found
    src = yamlsource.load(p, kind="dataset manifest")
    problems = _schema_problems(src)
    if problems:
        n, shown = len(problems), problems[:MAX_PROBLEMS_SHOWN]
        raise VerifilyError(
            f"{p}: the dataset manifest is not valid ({n:,} problem{'s' * (n != 1)})",
            hint="see schemas/dataset.schema.json and examples/datasets/ds_demo/v1/manifest.yaml",
            problems=shown,
            omitted=n - len(shown),
        )
    return _build(src.data, p, src)


def _schema_problems(src: yamlsource.Source) -> list[Problem]:
    if not isinstance(src.data, dict):
        return [Problem("the manifest must be a mapping of keys to values", file=src.path, line=1, column=1)]
    out = []
    for err in sorted(validator(SCHEMA).iter_errors(src.data), key=lambda e: list(map(str, e.absolute_path))):
        jp = tuple(err.absolute_path)
        line, col = src.where(jp)
        msg = err.message
        if err.validator == "additionalProperties":
            msg = f"unknown key: {msg}"
        out.append(Problem(msg, file=src.path, line=line, column=col, json_path=yamlsource.format_json_path(jp)))
    return out


def _build(data: dict[str, Any], path: Path, src: yamlsource.Source | None) -> Manifest:
    task = data.get("task")
    fields = default_fields(task)
    if "fields" in data:
        given = data["fields"]
        fields = {r: given.get(r, r if r in ("id", "tags") else None) for r in ROLES}
        fields = {r: k for r, k in fields.items() if k is not None or r not in PAIR_ROLES}
    splits = {
        s: [FileEntry(f["path"], f.get("sha256"), f.get("rows")) for f in spec["files"]]
        for s, spec in data["splits"].items()
    }
    m = Manifest(
        name=data["name"],
        version=data["version"],
        parent=data.get("parent"),
        path=path,
        dir=path.parent.resolve(),
        task=task,
        fields=fields,
        tag_keys=list(data.get("tag_keys", [])),
        splits=splits,
        description=data.get("description", ""),
        provenance=data.get("provenance", ""),
        license=data.get("license", ""),
        data=data,
        source=src,
    )
    problems = [p for s, files in splits.items() for i, f in enumerate(files) if (p := _path_problem(m, s, i, f))]
    if problems:
        raise VerifilyError(
            f"{path}: file paths must stay inside the dataset folder {m.dir}",
            hint="use paths relative to the manifest, without `..`; copy files in rather than symlinking them",
            problems=problems,
        )
    return m


def _path_problem(m: Manifest, split: str, index: int, entry: FileEntry) -> Problem | None:
    jp = ("splits", split, "files", index, "path")
    line, col = m.source.where(jp) if m.source else (None, None)
    where = {"file": str(m.path), "line": line, "column": col, "json_path": yamlsource.format_json_path(jp)}
    try:
        safe_path(m, entry.path)
    except VerifilyError as e:
        return Problem(e.message, **where)  # type: ignore[arg-type]
    return None


def safe_path(m: Manifest, rel: str) -> Path:
    """Resolve `rel` against the manifest folder; refuse absolute paths, `..` escapes and symlinks leading out."""
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise VerifilyError(f"absolute path {rel!r} is not allowed")
    target = (m.dir / rel).resolve()  # follows symlinks, so a link pointing outside is caught here too
    if not target.is_relative_to(m.dir):
        link = " (through a symlink)" if ".." not in Path(rel).parts else ""
        raise VerifilyError(f"path {rel!r} points outside the dataset folder{link}: {target}")
    return target


def dump_manifest(m: Manifest, path: Path | None = None) -> Path:
    """Write the manifest (YAML or JSON by extension) atomically. Keys keep the order they were written in; YAML
    comments are not preserved."""
    import yaml

    out = path or m.path
    data = m.data
    if out.suffix == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
