"""The run cache: a completed run with the same run key is returned instead of training.

`plan.cached_run` looks in output_dir, then in the cache folder (`cache_dir` in the config, VERIFILY_RUN_CACHE or
--cache-dir). A hit in the cache folder is copied into output_dir, where this run would have gone; a newly trained
run is copied into the cache folder. Copies are byte for byte (`runs.copy_run`), so the hash chain still verifies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import runs
from .plan import Plan

Echo = Callable[[str], None]


def bring_in(plan: Plan, cached: Path, echo: Echo) -> Path:
    """The run folder to return for a cached run. One found in the cache folder is first copied to where this
    run would have gone (when nothing is there yet), so the result is in output_dir as without a cache."""
    said = f"cached: run {cached} has the same run key ({plan.run_key[:12]}); "
    run_dir = cached
    if cached.parent.resolve() == plan.output_dir.resolve():
        echo(said + "returned without training")
    else:
        dest = plan.output_dir / plan.run_name
        if dest.exists():
            echo(said + f"returned without training, from the run cache ({dest} exists, so it was not copied there)")
        else:
            try:
                run_dir = runs.copy_run(cached, dest)
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
        have = runs.find_cached(cache_dir, key)
        dest = cache_dir / run_dir.name
        if have is not None:
            echo(f"the run cache already holds this run key: {have}")
        elif dest.exists():
            echo(f"note: not copied to the run cache: {dest} exists (another run, or a damaged one)")
        else:
            runs.copy_run(run_dir, dest)
            echo(f"copied to the run cache: {dest}")
    except OSError as e:
        echo(f"note: copying the run to the run cache {cache_dir} failed: {e}")
