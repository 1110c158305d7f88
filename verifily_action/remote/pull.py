"""`verifily dataset pull`, and the pull-through cache for `name@version` when VERIFILY_SERVER is set.

A version is downloaded into a temporary folder next to its destination; every file is checked (sha256 and rows,
as the manifest says) and the manifest's dataset hash must be the one the server reported; only then is the folder
renamed into place, so a destination that exists is complete. The cache is `<VERIFILY_CACHE>/datasets/<dataset
hash>/`: keyed by hash, so a version is fetched once, and checked again on every use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..datasets.manifest import Manifest, load_manifest
from ..datasets.scaffold import count_rows
from ..errors import Problem, VerifilyError
from ..hashing import sha256_file
from ..server.names import check_name
from .client import API, Client


def fetch_version(client: Client, name: str, version: str) -> dict[str, Any]:
    return client.call("GET", f"/api/v1/datasets/{check_name(name, 'dataset')}/{check_name(version, 'version')}")


def pull(client: Client, name: str, version: str, dest: Path) -> tuple[Manifest, bool]:
    """Download `name@version` into `dest` (which must not exist, or hold the same version); (manifest, fetched)."""
    info = fetch_version(client, name, version)
    if dest.exists():
        m = load_manifest(dest)
        if m.dataset_hash() != info["dataset_hash"]:
            raise VerifilyError(
                f"{dest} holds {m.ref} with dataset hash {m.dataset_hash()}, the server's is {info['dataset_hash']}",
                hint="move that folder away, or pull into another --datasets-root",
            )
        check_files(m)
        return m, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pulling-", dir=dest.parent))
    try:
        download(client, info, tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # someone else's pull won the race: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_manifest(dest), True


def download(client: Client, info: dict[str, Any], folder: Path, prefix: str = API) -> None:
    """Write the version `info` describes ({"manifest", "dataset_hash"}) into `folder`: the manifest, then each file
    from `prefix`/blobs (a runner reads through its lease: /api/v1/leases/<lease>), every one checked."""
    import yaml

    manifest_path = folder / "manifest.yaml"
    manifest_path.write_text(yaml.safe_dump(info["manifest"], sort_keys=False, allow_unicode=True), encoding="utf-8")
    m = load_manifest(manifest_path)  # refuses paths leaving the folder before anything is written there
    for files in m.splits.values():
        for f in files:
            target = m.file_path(f)
            target.parent.mkdir(parents=True, exist_ok=True)
            r = client.call("GET", f"{prefix}/blobs/{f.sha256}", stream=True)
            with open(target, "wb") as out:
                for block in r.iter_content(1024 * 1024):
                    out.write(block)
    check_files(m)
    if m.dataset_hash() != info["dataset_hash"]:
        raise VerifilyError(f"{m.ref}: the manifest hashes to {m.dataset_hash()}, not {info['dataset_hash']}")


def check_files(m: Manifest) -> None:
    """Every file's sha256 and row count as the manifest records them."""
    problems = []
    for split, files in m.splits.items():
        for f in files:
            p = m.file_path(f)
            if not p.is_file():
                problems.append(Problem(f"{split}: {f.path} is missing", file=str(m.path)))
            elif (got := sha256_file(p)) != f.sha256:
                problems.append(Problem(f"{split}: {f.path} hashes to {got}, not {f.sha256}", file=str(m.path)))
            elif (rows := count_rows(p, m.max_row_bytes)) != f.rows:
                problems.append(Problem(f"{split}: {f.path} has {rows} rows, not {f.rows}", file=str(m.path)))
    if problems:
        raise VerifilyError(f"{m.ref}: the pulled files do not match the manifest", problems=problems)


def cache_folder() -> Path:
    from ..train.models import cache_root

    return cache_root() / "datasets"


def pull_cached(name: str, version: str, url: str | None = None) -> Manifest:
    """`name@version` from the server (VERIFILY_SERVER or the login default), through the local cache."""
    client = Client.connect(url)
    info = fetch_version(client, name, version)
    dest = cache_folder() / info["dataset_hash"]
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pulling-", dir=dest.parent))
        try:
            download(client, info, tmp)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    m = load_manifest(dest)
    if m.dataset_hash() != info["dataset_hash"] or (m.name, m.version) != (name, version):
        raise VerifilyError(f"the cached {dest} is not {name}@{version} as the server has it", hint=f"delete {dest}")
    check_files(m)
    return m
