"""Build small datasets (manifest + JSONL files) in a temp folder for the dataset tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from verifily_action.hashing import sha256_file

REPO = Path(__file__).resolve().parent.parent
DEMO_ROOT = REPO / "examples" / "datasets"


def row(i: int, text: str | None = None, label: str = "positive", **tags: str) -> dict[str, Any]:
    text = f"text number {i}" if text is None else text
    return {"id": f"r{i}", "text": text, "label": label, "tags": tags or {"source": "human"}}


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def make_dataset(
    root: Path,
    files: dict[str, bytes],
    name: str = "ds",
    version: str = "v1",
    hashed: bool = True,
    tag_keys: tuple[str, ...] = ("source", "origin"),
    **extra: Any,
) -> Path:
    """Write `<root>/<name>/<version>/` with one file per split (`<split>.jsonl`) and a manifest; returns its path."""
    folder = root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, data in files.items():
        (folder / f"{split}.jsonl").write_bytes(data)
        entry: dict[str, Any] = {"path": f"{split}.jsonl"}
        if hashed:
            entry["sha256"] = sha256_file(folder / f"{split}.jsonl")
            entry["rows"] = sum(1 for line in data.splitlines() if line.strip())
        splits[split] = {"files": [entry]}
    manifest = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": "classification",
        "fields": {"id": "id", "text": "text", "label": "label", "tags": "tags"},
        "tag_keys": list(tag_keys),
        "splits": splits,
        **extra,
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path
