"""Run folders: layout, atomic writes, the run key and cache lookup, and the hash chain (`hashes.json`).

Layout of a run (`<output_dir>/<run_name>/`)::

    run_meta.json      status, ids, dataset/model identity, data report, root_hash (schemas/run_meta.schema.json)
    config.yaml        the resolved config (schema defaults filled)
    hashes.json        {"schema_version": 1, "algorithm": "sha256", "entries": {name: hex}} (schemas/hashes.schema.json)
    environment.json   library versions, hardware, git commit
    train_log.jsonl    one line per logging step: step, epoch, loss, lr, grad_norm, tokens_per_s
    adapter/           PEFT adapter (adapter_model.safetensors, adapter_config.json), label_map.json, README.md
    tokenizer/         the tokenizer files eval loads
    eval/<eval_name>/  written later by `verifily eval` and appended to the chain with `add_artifacts`

Atomicity: a run is built under `<output_dir>/<run_name>.partial/` and renamed to its final name only after
run_meta.json says `completed` (written last). A crash leaves the `.partial` folder with status `failed` and the
error; Ctrl-C leaves status `interrupted`, resumable with `verifily train --resume <folder>`. Every JSON/text file is
written to a temporary name in the same folder and moved into place with `os.replace`.

Hash chain. `entries` maps names to sha256 hex digests:
  * a plain relative path (`adapter/adapter_model.safetensors`, `config.yaml`, `train_log.jsonl`, ...) is the hash
    of that file in the run folder (recomputed by `verify_chain`);
  * `config:canonical` is the hash of the resolved config in canonical JSON: `hashing.canonical_json` of the dict
    read from config.yaml, i.e. `json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)` as UTF-8 (recomputed from config.yaml by `verify_chain`);
  * `run_meta:canonical` is the hash of run_meta.json's fields but `root_hash` in canonical JSON (`seal` writes it,
    `verify_chain` recomputes it), so an edit of the status, metrics or data report is caught too;
  * `dataset:<ref>/manifest`, `dataset:<ref>/<file>` and `dataset:<ref>` are the manifest file, each data file and
    the dataset hash (`Manifest.dataset_hash()`); `model:<file>` each base-model file and `model:revision` a hub
    revision. These name inputs outside the run folder; `verify_chain` reports them as recorded, not recomputed.
The root hash in run_meta.json is `hashing.sha256_json(entries)` (canonical JSON of the whole mapping).

Run key: `sha256_json({"dataset": <dataset hash>, "eval_dataset": <hash or null>, "config": <resolved config
without KEY_EXCLUDED keys>, "model": <base model hash>, "verifily_version": <version>})`. Paths and names are left
out because the content hashes already identify what they point to.

Run cache: `train` returns a completed, intact run with its run key from output_dir, else from the configured
cache folder (`cache_dir`), which is copied into output_dir (`copy_run`); a new run is copied into the cache folder
too. A copy is byte for byte, so its hash chain and root hash are the original's (config.yaml still names the
output_dir it was trained into).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Problem, VerifilyError
from .hashing import sha256_file, sha256_json

RUN_META = "run_meta.json"
HASHES = "hashes.json"
CONFIG = "config.yaml"
PARTIAL = ".partial"
STATUSES = ("running", "completed", "failed", "interrupted")
# Config keys that name where things are, not what they are (content hashes cover the rest).
KEY_EXCLUDED = ("output_dir", "cache_dir", "run_name", "datasets_root", "model", "dataset", "eval_dataset", "gates")


@dataclass
class Run:
    """A run folder as read from disk."""

    dir: Path
    meta: dict[str, Any]
    config: Any  # config.TrainConfig

    @property
    def status(self) -> str:
        return str(self.meta.get("status"))

    @property
    def id(self) -> str:
        return str(self.meta.get("id"))


# ---------------------------------------------------------------- atomic writes


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, then `os.replace` (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------- loading


def load_run(path: str | Path, require_completed: bool = False) -> Run:
    """Read a run folder; VerifilyError when it is not one (or not completed, with `require_completed`)."""
    import yaml

    from .config import from_dict

    d = Path(path)
    meta_path = d / RUN_META
    if not meta_path.is_file():
        partial = d.with_name(d.name + PARTIAL)
        hint = (
            f"{partial} holds an unfinished run; resume it with `verifily train --resume {partial}`"
            if partial.is_dir()
            else "give the folder of a run written by `verifily train` (it holds run_meta.json)"
        )
        raise VerifilyError(f"{d} is not a run folder (no {RUN_META})", hint=hint)
    try:
        meta = read_json(meta_path)
        with open(d / CONFIG, encoding="utf-8") as f:
            cfg = from_dict(yaml.safe_load(f))
    except (OSError, ValueError, TypeError, yaml.YAMLError) as e:
        raise VerifilyError(f"{d}: cannot read the run: {e}", hint="the run folder is damaged; train again") from e
    if require_completed and meta.get("status") != "completed":
        err = meta.get("error")
        raise VerifilyError(
            f"run {d} is not completed (status {meta.get('status')!r})" + (f": {err}" if err else ""),
            hint=f"resume it with `verifily train --resume {d}` or train again",
        )
    return Run(d.resolve(), meta, cfg)


def update_meta(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into run_meta.json (atomically) and return the new document."""
    path = run_dir / RUN_META
    meta = read_json(path) if path.is_file() else {}
    meta.update(changes)
    write_json_atomic(path, meta)
    return meta


# ---------------------------------------------------------------- hash chain


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
    import yaml

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
                with open(d / CONFIG, encoding="utf-8") as fh:
                    got = sha256_json(yaml.safe_load(fh))
            except (OSError, yaml.YAMLError) as e:
                problems.append(Problem(f"cannot read {CONFIG}: {e}", file=str(d / CONFIG)))
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


# ---------------------------------------------------------------- run key and cache


def key_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in KEY_EXCLUDED}


def run_key(
    *, dataset_hash: str, eval_dataset_hash: str | None, config: dict[str, Any], model_hash: str, version: str
) -> str:
    return sha256_json(
        {
            "dataset": dataset_hash,
            "eval_dataset": eval_dataset_hash,
            "config": key_config(config),
            "model": model_hash,
            "verifily_version": version,
        }
    )


def find_cached(output_dir: str | Path, key: str) -> Path | None:
    """The newest completed, intact run in `output_dir` whose run key is `key`."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found: list[tuple[str, Path]] = []
    for meta_path in root.glob(f"*/{RUN_META}"):
        # unfinished runs, and copies or replaced runs on their way in or out (`.name.copy-*`, `.name.old-*`)
        if meta_path.parent.name.endswith(PARTIAL) or meta_path.parent.name.startswith("."):
            continue
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError):
            continue
        if meta.get("run_key") == key and meta.get("status") == "completed":
            found.append((str(meta.get("ended_at") or ""), meta_path.parent))
    for _, d in sorted(found, reverse=True):
        if not verify_chain(d):
            return d
    return None


def partial_dir(output_dir: str | Path, run_name: str) -> Path:
    return Path(output_dir) / f"{run_name}{PARTIAL}"


def final_dir_for(partial: Path) -> Path:
    name = partial.name[: -len(PARTIAL)] if partial.name.endswith(PARTIAL) else partial.name
    return partial.with_name(name)


def finalize(partial: Path) -> Path:
    """Move a completed `.partial` folder to its final name (replacing an older run of that name, for --force)."""
    final = final_dir_for(partial)
    if final == partial:
        return partial
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def copy_run(src: Path, dest: Path) -> Path:
    """Copy the run folder `src` to `dest` (which must not exist) through a hidden temporary folder beside it, so
    a reader never finds half a copy under the final name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.copy-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        os.rename(tmp, dest)  # fails, rather than merging, if dest appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
