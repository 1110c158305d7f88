"""The run key and the run cache: a completed, intact run with the same run key is returned instead of training.

Run key: `sha256_json({"dataset": <dataset hash>, "eval_dataset": <hash or null>, "config": <resolved config without
KEY_EXCLUDED keys>, "model": <base model hash>, "verifily_version": <version>})`. Paths and names are left out: the
content hashes already identify what they point to.

`train` looks in output_dir, then in the cache folder (`cache_dir` in the config, VERIFILY_RUN_CACHE or
--cache-dir). A hit in the cache folder is copied into output_dir, where this run would have gone; a newly trained
run is copied into the cache folder. Copies are byte for byte (`folder.copy_run`), so the hash chain still verifies
(config.yaml still names the output_dir it was trained into). A copy holds the source run's lock shared and the
destination's exclusively (`lock.run_lock`): a run never changes while it is copied. A copy that cannot be made (a
lock held elsewhere, a full disk) is a note: the run itself is complete.

KEY_SETTINGS_EXCLUDED are settings that say when to save, not what is trained (a resumed run ends bit for bit as
an uninterrupted one), or how eval results are computed from the predictions, so changing them keeps the run key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..hashing import sha256_json
from .chain import verify_chain
from .files import disk_full_error, is_disk_full, read_json
from .folder import copy_run, recover
from .layout import RUN_META, is_hidden_or_partial
from .lock import run_lock

Echo = Callable[[str], None]
# Config keys that name where things are, not what they are (content hashes cover the rest).
KEY_EXCLUDED = (
    "output_dir", "cache_dir", "run_name", "datasets_root", "model", "dataset", "eval_dataset", "gates", "attribute",
    "server",  # where datasets come from; their hashes are in the key
    "distributed",  # one process ignores it; a multi-process run's key adds world size and strategy (train/plan.py)
)  # fmt: skip
KEY_SETTINGS_EXCLUDED = {
    "training": ("checkpoint_minutes",),
    "eval": ("slice_macro_f1", "discover_max_candidates", "fdr", "slices"),  # how results are computed from predictions
}


def key_config(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in KEY_EXCLUDED}
    for section, keys in KEY_SETTINGS_EXCLUDED.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    return out


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
                with run_lock(cached, "copying", shared=True):
                    run_dir = copy_run(cached, dest)
                echo(said + f"copied from the run cache to {dest} without training")
            except (OSError, VerifilyError) as e:
                why = _why(e, dest)
                echo(said + f"returned without training, from the run cache (copying it to {dest} failed: {why})")
    echo("hint: --force retrains")
    return run_dir


def _why(e: Exception, dest: Path) -> str:
    if isinstance(e, OSError) and is_disk_full(e):
        return disk_full_error(e, dest).message
    return e.message if isinstance(e, VerifilyError) else str(e)


def store(cache_dir: Path, run_dir: Path, key: str, echo: Echo) -> None:
    """Copy a new run into the cache folder, unless it already holds an intact run with this key. A failure is
    a note, not an error: the run itself is complete."""
    if run_dir.parent.resolve() == cache_dir.resolve():
        return
    dest = cache_dir / run_dir.name
    try:
        with run_lock(dest, "copying"), run_lock(run_dir, "copying", shared=True):
            recover(dest, echo)
            have = find_cached(cache_dir, key)
            if have is not None:
                echo(f"the run cache already holds this run key: {have}")
            elif dest.exists():
                echo(f"note: not copied to the run cache: {dest} exists (another run, or a damaged one)")
            else:
                copy_run(run_dir, dest)
                echo(f"copied to the run cache: {dest}")
    except (OSError, VerifilyError) as e:
        echo(f"note: copying the run to the run cache {cache_dir} failed: {_why(e, dest)}")
