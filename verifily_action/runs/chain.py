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
Before trusting an entry `verify_chain` applies `entries`' rules: names are plain relative paths or known inputs,
the entries every run records are there, and the run folder holds no symbolic link or special file. When a signing
key is set, `seal` signs the new root (`signature`); a signature.json that is present must sign the root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file, sha256_json
from ..yamlsource import load_yaml
from .entries import (
    CONFIG_ENTRY,
    META_ENTRY,
    Scan,
    entry_problems,
    is_file_entry,
    missing_problems,
    name_problem,
    scan,
)
from .files import read_json, write_json_atomic
from .layout import CONFIG, HASHES, RUN_META, SIGNATURE


def read_entries(run_dir: Path) -> dict[str, str]:
    path = run_dir / HASHES
    if not path.is_file():
        return {}
    return dict(read_json(path).get("entries", {}))


def _read_chain(run_dir: Path) -> tuple[dict[str, str] | None, str | None]:
    """hashes.json's entries, or why they cannot be read (a damaged or hostile file is a problem, not a crash)."""
    try:
        doc = read_json(run_dir / HASHES)
    except (OSError, ValueError) as e:
        return None, f"{HASHES} cannot be read: {e}"
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
        return None, f"{HASHES} has no mapping of entry names to hashes (`entries`)"
    return entries, None


def write_entries(run_dir: Path, entries: dict[str, str]) -> str:
    """Write hashes.json and return the root hash (run_meta.json is not touched)."""
    entries = dict(sorted(entries.items()))
    write_json_atomic(run_dir / HASHES, {"schema_version": 1, "algorithm": "sha256", "entries": entries})
    return sha256_json(entries)


def meta_digest(meta: dict[str, Any]) -> str:
    return sha256_json({k: v for k, v in meta.items() if k != "root_hash"})


def seal(run_dir: Path, entries: dict[str, str], **meta_changes: Any) -> dict[str, Any]:
    """Apply `meta_changes` to run_meta.json, hash its fields into `entries` (META_ENTRY), write hashes.json, then
    run_meta.json with the new root hash, then sign the root when VERIFILY_SIGNING_KEY names a key (the old
    signature is removed first: a kill before the new one leaves an unsigned run, never a wrong signature); returns
    the meta. Any later edit of run_meta.json fails verify_chain."""
    from . import keyless, signature

    key = signature.configured_key()  # a broken key fails here, before anything is written
    path = run_dir / RUN_META
    meta = read_json(path) if path.is_file() else {}
    meta.update(meta_changes)
    meta.pop("root_hash", None)
    entries = {**entries, META_ENTRY: meta_digest(meta)}
    signature.remove(run_dir)
    keyless.remove(run_dir)
    meta["root_hash"] = write_entries(run_dir, entries)
    write_json_atomic(path, meta)
    if key is not None:
        signature.sign(run_dir, key, meta["root_hash"])
    return meta


def hash_run_files(run_dir: Path, paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of each file (absolute or relative to run_dir; folders expand to their files), keyed by posix
    path relative to run_dir. A symbolic link or special file there is an error: a run holds only regular files."""
    given = Path(os.path.abspath(run_dir))
    run_dir = given.resolve()
    found = scan(run_dir)
    out: dict[str, str] = {}
    for p in paths:
        full = Path(os.path.abspath(Path(p) if Path(p).is_absolute() else run_dir / p))
        rel = _relative(full, given, run_dir)
        if rel and found.blocked(rel):
            bad = next(q for q in found.unsafe.values() if q.file and full.is_relative_to(q.file))
            raise VerifilyError(bad.message, hint=bad.hint)
        under = [f for f in found.files if not rel or f == rel or f.startswith(rel + "/")]
        inner = [q for k, q in found.unsafe.items() if not rel or k.startswith(rel + "/")]
        if inner:
            raise VerifilyError(inner[0].message, hint=inner[0].hint)
        if not under and not full.is_dir():
            raise VerifilyError(f"{full} is not a file of the run folder {run_dir}")
        out.update({f: sha256_file(run_dir / f) for f in under})
    return out


def _relative(full: Path, given: Path, real: Path) -> str:
    """`full`'s path inside the run folder (named as given or with its links resolved); "" for the folder itself."""
    for base, path in ((given, full), (real, full), (real, Path(os.path.realpath(full.parent)) / full.name)):
        if path.is_relative_to(base):
            rel = path.relative_to(base).as_posix()
            return "" if rel == "." else rel
    raise VerifilyError(f"{full} is outside the run folder {real}")


def drop_links(run_dir: Path) -> list[str]:
    """Delete every symbolic link in the run folder before it is hashed, returning their relative paths. Training
    makes none; experiment trackers leave pointers (wandb's `latest-run`, `debug.log`, and a `debug-core.log` that
    points out of the run into ~/.cache), and a run folder holds only regular files."""
    removed = []
    for rel, problem in scan(Path(run_dir)).unsafe.items():
        if problem.file and os.path.islink(problem.file):
            os.unlink(problem.file)
            removed.append(rel)
    return removed


def add_artifacts(run_dir: str | Path, paths: list[Path]) -> str:
    """Hash files into hashes.json and rewrite run_meta.json's root_hash; returns the new root hash."""
    d = Path(run_dir)
    entries = read_entries(d)
    entries.update(hash_run_files(d, paths))
    return str(seal(d, entries)["root_hash"])


def verified_root(run_dir: str | Path) -> str | None:
    """The run's root hash when its whole chain holds (the PR report shows it); None otherwise."""
    if verify_chain(run_dir):
        return None
    root = read_json(Path(run_dir) / RUN_META).get("root_hash")
    return root if isinstance(root, str) else None


def verify_chain(run_dir: str | Path, found: Scan | None = None) -> list[Problem]:
    """Recompute every hash the run folder can recompute, after `entries`' rules (names, required entries, no
    links or special files); one Problem per difference (empty: intact). `found`: the folder's scan when the caller
    made it (and reports its problems itself)."""
    d = Path(run_dir)
    problems: list[Problem] = []
    if found is None:
        found = scan(d)
        problems.extend(found.unsafe.values())
    hashes = d / HASHES
    if HASHES in found.unsafe or RUN_META in found.unsafe:
        return problems  # the chain itself is behind a link or a special file: nothing in it can be trusted
    if not hashes.is_file():
        return [*problems, Problem(f"{HASHES} is missing", file=str(hashes))]
    entries, why = _read_chain(d)
    if entries is None:
        return [*problems, Problem(str(why), file=str(hashes))]
    meta_path = d / RUN_META
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError) as e:
        meta = None
        problems.append(Problem(f"cannot read {RUN_META}: {e}", file=str(meta_path)))
    if meta is not None and not isinstance(meta, dict):
        problems.append(Problem(f"{RUN_META} is not a JSON object", file=str(meta_path)))
        meta = None
    bad = entry_problems(entries, hashes)
    problems.extend(bad)
    if isinstance(meta, dict):
        problems.extend(missing_problems(entries, meta, d))
    refused = {name for name in entries if name_problem(name)}
    for name, want in sorted(entries.items()):
        if name in refused:
            continue
        if name == META_ENTRY:
            if meta is None:
                continue
            got = meta_digest(meta)
        elif name == CONFIG_ENTRY:
            try:
                got = sha256_json(load_yaml(d / CONFIG, "run config"))
            except VerifilyError as e:
                problems.extend(e.problems or [Problem(e.message, file=str(d / CONFIG))])
                continue
        elif not is_file_entry(name):
            continue  # an input outside the run folder (dataset, base model): recorded, not recomputed here
        else:
            f = d / name
            if found.blocked(name):
                continue  # behind a link or a special file, reported by the scan: never opened
            if not f.is_file():
                problems.append(Problem(f"{name} is listed in {HASHES} but missing", file=str(f)))
                continue
            got = sha256_file(f)
        if got != want:
            problems.append(
                Problem(
                    f"{name} changed: sha256 {got} but {HASHES} records {want}",
                    file=str(d / {META_ENTRY: RUN_META, CONFIG_ENTRY: CONFIG}.get(name, name)),
                )
            )
    if isinstance(meta, dict):
        if meta.get("root_hash") != sha256_json(dict(sorted(entries.items()))):
            problems.append(Problem(f"root_hash in {RUN_META} does not match {HASHES}", file=str(meta_path)))
        elif SIGNATURE not in found.unsafe:
            from .signature import check

            problems.extend(check(d, meta.get("root_hash")).problems or [])
    elif not meta_path.exists():
        problems.append(Problem(f"{RUN_META} is missing", file=str(meta_path)))
    return problems
