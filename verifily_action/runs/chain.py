"""The hash chain: `hashes.json` records a sha256 for every artifact of a run, and run_meta.json's `root_hash` seals
the whole mapping (`hashing.sha256_json(entries)`, canonical JSON).

Entries map names to sha256 hex digests:
  * a plain relative path (`adapter/adapter_model.safetensors`, `config.yaml`, ...) is the hash of that file in the
    run folder (recomputed by `verify_chain`);
  * `config:canonical` is the resolved config read from config.yaml in canonical JSON (`hashing.canonical_json`);
  * `run_meta:canonical` is run_meta.json's fields but `root_hash` in canonical JSON, so an edit of the status,
    metrics or data report is caught too;
  * `dataset:<ref>/manifest`, `dataset:<ref>/<file>`, `dataset:<ref>`, `model:<file>` and `model:revision` name
    inputs outside the run folder: `verify_chain` reports them as recorded; `verify.verify_run` rechecks them
    when they are at hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file, sha256_json
from ..yamlsource import load_yaml
from .files import read_json, write_json_atomic
from .layout import CONFIG, HASHES, RUN_META


def read_entries(run_dir: Path) -> dict[str, str]:
    path = run_dir / HASHES
    if not path.is_file():
        return {}
    return dict(read_json(path).get("entries", {}))


def write_entries(run_dir: Path, entries: dict[str, str]) -> str:
    """Write hashes.json and return the root hash (run_meta.json is not touched)."""
    entries = dict(sorted(entries.items()))
    write_json_atomic(run_dir / HASHES, {"schema_version": 1, "algorithm": "sha256", "entries": entries})
    return sha256_json(entries)


META_ENTRY = "run_meta:canonical"  # run_meta.json's own fields (all but root_hash) are part of the chain too


def meta_digest(meta: dict[str, Any]) -> str:
    return sha256_json({k: v for k, v in meta.items() if k != "root_hash"})


def seal(run_dir: Path, entries: dict[str, str], **meta_changes: Any) -> dict[str, Any]:
    """Apply `meta_changes` to run_meta.json, hash its fields into `entries` (META_ENTRY), write hashes.json, then
    run_meta.json with the new root hash; returns the meta. Any later edit of run_meta.json fails verify_chain."""
    path = run_dir / RUN_META
    meta = read_json(path) if path.is_file() else {}
    meta.update(meta_changes)
    meta.pop("root_hash", None)
    entries = {**entries, META_ENTRY: meta_digest(meta)}
    meta["root_hash"] = write_entries(run_dir, entries)
    write_json_atomic(path, meta)
    return meta


def hash_run_files(run_dir: Path, paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of each file (absolute or relative to run_dir; folders expand to their files), keyed by posix
    path relative to run_dir."""
    run_dir = Path(run_dir).resolve()
    out: dict[str, str] = {}
    for p in paths:
        full = Path(p) if Path(p).is_absolute() else run_dir / p
        full = full.resolve()
        files = sorted(f for f in full.rglob("*") if f.is_file()) if full.is_dir() else [full]
        for f in files:
            try:
                rel = f.relative_to(run_dir).as_posix()
            except ValueError as e:
                raise VerifilyError(f"{f} is outside the run folder {run_dir}") from e
            out[rel] = sha256_file(f)
    return out


def add_artifacts(run_dir: str | Path, paths: list[Path]) -> str:
    """Hash files into hashes.json and rewrite run_meta.json's root_hash; returns the new root hash."""
    d = Path(run_dir)
    entries = read_entries(d)
    entries.update(hash_run_files(d, paths))
    return str(seal(d, entries)["root_hash"])


def verify_chain(run_dir: str | Path) -> list[Problem]:
    """Recompute every hash the run folder can recompute; one Problem per difference (empty: intact)."""
    d = Path(run_dir)
    problems: list[Problem] = []
    hashes = d / HASHES
    if not hashes.is_file():
        return [Problem(f"{HASHES} is missing", file=str(hashes))]
    entries = read_entries(d)
    for name, want in sorted(entries.items()):
        if name == META_ENTRY:
            try:
                got = meta_digest(read_json(d / RUN_META))
            except (OSError, ValueError) as e:
                problems.append(Problem(f"cannot read {RUN_META}: {e}", file=str(d / RUN_META)))
                continue
        elif name == "config:canonical":
            try:
                got = sha256_json(load_yaml(d / CONFIG, "run config"))
            except VerifilyError as e:
                problems.extend(e.problems or [Problem(e.message, file=str(d / CONFIG))])
                continue
        elif ":" in name:
            continue  # an input outside the run folder (dataset, base model): recorded, not recomputed here
        else:
            f = d / name
            if not f.is_file():
                problems.append(Problem(f"{name} is listed in {HASHES} but missing", file=str(f)))
                continue
            got = sha256_file(f)
        if got != want:
            problems.append(
                Problem(
                    f"{name} changed: sha256 {got} but {HASHES} records {want}",
                    file=str(d / {META_ENTRY: RUN_META, "config:canonical": CONFIG}.get(name, name)),
                )
            )
    meta_path = d / RUN_META
    if meta_path.is_file():
        root = read_json(meta_path).get("root_hash")
        if root != sha256_json(dict(sorted(entries.items()))):
            problems.append(Problem(f"root_hash in {RUN_META} does not match {HASHES}", file=str(meta_path)))
    else:
        problems.append(Problem(f"{RUN_META} is missing", file=str(meta_path)))
    return problems
