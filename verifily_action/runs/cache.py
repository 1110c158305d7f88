"""The run key and the run cache: a completed, intact run with the same run key is returned instead of training.

Run key: `sha256_json({"dataset": <dataset hash>, "eval_dataset": <hash or null>, "config": <resolved config without
KEY_EXCLUDED keys>, "model": <base model hash>, "verifily_version": <version>})`. Paths and names are left out: the
content hashes already identify what they point to.

`train` looks in output_dir, then in the cache folder (`cache_dir` in the config, VERIFILY_RUN_CACHE or
--cache-dir). A hit in the cache folder is copied into output_dir, where this run would have gone; a newly trained
run is copied into the cache folder. Copies are byte for byte (`folder.copy_run`), so the hash chain still verifies
(config.yaml still names the output_dir it was trained into).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..hashing import sha256_json
from .chain import verify_chain
from .files import read_json
from .folder import copy_run
from .layout import RUN_META, is_hidden_or_partial

Echo = Callable[[str], None]
# Config keys that name where things are, not what they are (content hashes cover the rest).
KEY_EXCLUDED = ("output_dir", "cache_dir", "run_name", "datasets_root", "model", "dataset", "eval_dataset", "gates")


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
        if is_hidden_or_partial(meta_path.parent):
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


def bring_in(cached: Path, output_dir: Path, run_name: str, key: str, echo: Echo) -> Path:
    """The run folder to return for a cached run. One found in the cache folder is first copied to where this
    run would have gone (when nothing is there yet), so the result is in output_dir as without a cache."""
    said = f"cached: run {cached} has the same run key ({key[:12]}); "
    run_dir = cached
    if cached.parent.resolve() == output_dir.resolve():
        echo(said + "returned without training")
    else:
        dest = output_dir / run_name
        if dest.exists():
            echo(said + f"returned without training, from the run cache ({dest} exists, so it was not copied there)")
        else:
            try:
                run_dir = copy_run(cached, dest)
                echo(said + f"copied from the run cache to {dest} without training")
            except OSError as e:
                echo(said + f"returned without training, from the run cache (copying it to {dest} failed: {e})")
    echo("hint: --force retrains")
    return run_dir


def store(cache_dir: Path, run_dir: Path, key: str, echo: Echo) -> None:
    """Copy a new run into the cache folder, unless it already holds an intact run with this key. A failure is
    a note, not an error: the run itself is complete."""
    if run_dir.parent.resolve() == cache_dir.resolve():
        return
    try:
        have = find_cached(cache_dir, key)
        dest = cache_dir / run_dir.name
        if have is not None:
            echo(f"the run cache already holds this run key: {have}")
        elif dest.exists():
            echo(f"note: not copied to the run cache: {dest} exists (another run, or a damaged one)")
        else:
            copy_run(run_dir, dest)
            echo(f"copied to the run cache: {dest}")
    except OSError as e:
        echo(f"note: copying the run to the run cache {cache_dir} failed: {e}")
