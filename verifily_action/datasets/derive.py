"""`verifily dataset derive`: a new version of a dataset without some rows — the ids in a file, or the train rows an
attribution valued below a threshold — whose manifest records its parent and why the rows went (`derivation`).

The parent's files are checked against their hashes first; every kept line is copied byte for byte (no
re-serialization), files of untouched splits are copied whole; the new version is written into a hidden folder
beside its place and renamed into it when complete, so a crash never leaves a half-made version; an existing
version is never overwritten. Every id to drop must be in the split (else nothing is written).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from .manifest import Manifest

MAX_SHOWN = 10


@dataclass
class Drop:
    """What to drop from one split, and why (recorded in the new manifest)."""

    split: str
    ids: set[str]
    rule: str
    attribution: dict[str, Any] | None = None


def ids_from_file(path: Path) -> set[str]:
    """Ids, one per line (blank lines and `#` comments skipped), or JSONL rows with an `id` (e.g. an attribution's
    rows.jsonl)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VerifilyError(f"cannot read the ids file {path}: {e}", hint="give a text file, one id per line") from None
    ids: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            try:
                row = json.loads(s)
            except ValueError:
                raise VerifilyError(
                    f"{path}:{n}: not valid JSON", hint="one id per line, or JSONL rows with `id`"
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
                raise VerifilyError(f"{path}:{n}: a JSON row without a string `id`")
            ids.add(str(row["id"]))
        else:
            ids.add(s)
    if not ids:
        raise VerifilyError(f"the ids file {path} names no id", hint="one id per line")
    return ids


def ids_below(run_dir: Path, method: str, threshold: float) -> tuple[set[str], dict[str, Any]]:
    """The train rows a run's attribution valued below `threshold`; the run's chain must hold."""
    from ..runs.chain import verify_chain
    from ..runs.folder import load_run
    from ..runs.layout import ATTRIBUTION_ROWS, attribution_dir

    run = load_run(run_dir, require_completed=True)
    rows_path = attribution_dir(run.dir, method) / ATTRIBUTION_ROWS
    if not rows_path.is_file():
        raise VerifilyError(
            f"run {run.dir} has no {method} attribution ({rows_path} is missing)",
            hint=f"verifily attribute --run {run.dir} --method {method}",
        )
    problems = verify_chain(run.dir)
    if problems:
        raise VerifilyError(f"run {run.dir} fails its hash check: {len(problems)} file(s) differ", problems=problems)
    ids = set()
    for line in rows_path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["value"] < threshold:
            ids.add(str(row["id"]))
    source = {"run_id": str(run.meta.get("id", run.dir.name)), "root_hash": run.meta.get("root_hash"), "method": method}
    return ids, source


def derive(parent: Manifest, version: str, drop: Drop, root: Path | None = None) -> Manifest:
    """Write `<parent's dataset folder>/<version>/` (or `<root>/<name>/<version>/`) without the rows of `drop`;
    returns its manifest."""
    from .loading import check_files, load_split
    from .manifest import dump_manifest, load_manifest

    if not drop.ids:
        raise VerifilyError("no row to drop: the new version would equal its parent", hint="check the ids or rule")
    entries = parent.require_split(drop.split)
    target = (Path(root) / parent.name if root is not None else parent.dir.parent) / version
    if target.exists():
        raise VerifilyError(f"{target} already exists", hint="choose another --to version")
    for split in parent.splits:
        check_files(parent, split)
    ids = [str(x) for x in load_split(parent, drop.split)["id"]]
    missing = sorted(drop.ids - set(ids))
    if missing:
        shown = ", ".join(missing[:MAX_SHOWN]) + (
            f" (and {len(missing) - MAX_SHOWN} more)" if len(missing) > MAX_SHOWN else ""
        )
        raise VerifilyError(
            f"{len(missing)} id(s) to drop are not in {parent.ref}'s {drop.split} split: {shown}",
            hint="derive from the version the ids came from",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{version}.derive-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    try:
        _write(parent, stage, drop, entries, ids)
        data = json.loads(json.dumps(parent.data))
        data["version"], data["parent"] = version, parent.version
        data["description"] = f"{parent.ref} without {len(drop.ids)} {drop.split} row(s): {drop.rule}"
        data["derivation"] = {
            "from": parent.ref,
            "dropped": {drop.split: len(drop.ids)},
            "dropped_ids_sha256": hashlib.sha256("".join(f"{i}\n" for i in sorted(drop.ids)).encode()).hexdigest(),
            "rule": drop.rule,
            "attribution": drop.attribution,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        staged = parent.with_files(parent.splits)  # a copy to re-point at the staged folder
        staged.data = data
        manifest_path = stage / parent.path.name
        dump_manifest(staged, manifest_path)
        from .scaffold import hash_manifest

        hash_manifest(load_manifest(manifest_path))
        os.rename(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return load_manifest(target / parent.path.name)


def _write(parent: Manifest, stage: Path, drop: Drop, entries: list[Any], ids: list[str]) -> None:
    """Copy every file into `stage`; the dropped split's files line by line, skipping the dropped ids' lines. The
    loader's row order is the files' order and, in each, its non-blank lines: `ids` follows it."""
    from .rows import _BOM

    position = 0
    for split, files in parent.splits.items():
        for e in files:
            src, dst = parent.file_path(e), stage / e.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            if split != drop.split:
                shutil.copyfile(src, dst)
                continue
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                for line in fin:
                    if line.strip() and line.strip() != _BOM:
                        keep = ids[position] not in drop.ids
                        position += 1
                        if keep:
                            fout.write(line)
                    else:
                        fout.write(line)
    if position != len(ids):
        raise VerifilyError(
            f"{parent.ref}'s {drop.split} files hold {position} rows but the loader read {len(ids)}",
            problems=[Problem("the split's files changed while deriving", file=str(parent.path))],
        )
