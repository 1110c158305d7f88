"""Runs and dataset versions rebuilt from the server's blob store as folders the run and dataset code reads, once
per root hash (a run) or dataset hash (a version), under `<store>/dashboard/`. Blobs never change and were verified
when uploaded (a run's chain too, when pushed), so a rebuilt folder is reused; it appears whole (built beside it,
then renamed) or not at all. Callers check the organization in the database before asking for a folder."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import VerifilyError

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _build(target: Path, files: Mapping[str, str], store: Any, extra: Mapping[str, str] | None = None) -> Path:
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        for rel, sha in files.items():
            src = store.local_path(sha)
            dest = (tmp / rel).resolve()
            if src is None or not dest.is_relative_to(tmp.resolve()):
                raise VerifilyError(f"{rel}: not in the blob store", hint="push the run or dataset again")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        for rel, text in (extra or {}).items():
            (tmp / rel).write_text(text, encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another request built it first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def run_folder(cache: Path, store: Any, root_hash: str, files: Mapping[str, str], run_name: str | None) -> Path:
    """`<cache>/runs/<root hash>/<run name>`: the run named as it was trained (compare shows folder names)."""
    name = run_name if run_name and _SAFE.match(run_name) else root_hash[:12]
    return _build(cache / "runs" / root_hash / name, files, store)


def org_root(cache: Path, org: str) -> Path:
    """`<cache>/orgs/<org>/`: a datasets root (`<name>/<version>/`) of the organization's versions, for the dataset
    diff of a comparison and the dataset pages; only versions `dataset_folder` rebuilt are in it."""
    return cache / "orgs" / org


def dataset_folder(root: Path, store: Any, manifest: Mapping[str, Any]) -> Path:
    """`<root>/<name>/<version>/`: manifest.yaml and the files it names (by their sha256)."""
    from ..datasets.manifest import load_manifest

    target = root / str(manifest["name"]) / str(manifest["version"])
    if not target.is_dir():
        files = {}
        for split in manifest.get("splits", {}).values():
            for entry in split.get("files", []):
                files[str(entry["path"])] = str(entry["sha256"])
        text = yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True)
        _build(target, files, store, {"manifest.yaml": text})
    load_manifest(target)  # refuses a manifest whose paths leave the folder
    return target
