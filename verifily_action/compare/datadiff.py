"""The change of training data between the baseline and each candidate run, in words ("v2 added 1,000 rows with
source=synthetic, removed 1,000"), when both runs trained on versions of one dataset whose manifests are at hand.

The row-level diff is the datasets package's (`verifily dataset diff`); this module only finds the manifests and
phrases the result. Runs downloaded without their data simply get no dataset diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from .loading import EvalRun


def _manifest(ref: str, root: str | Path | None, run: EvalRun) -> Any | None:
    from ..datasets import resolve

    roots: list[str | Path | None] = [root] if root else [None]
    cfg_root = _config_root(run)
    if cfg_root is not None:
        roots.append(cfg_root)
    for r in roots:
        try:
            return resolve(ref, r)
        except VerifilyError:
            continue
    return None


def _config_root(run: EvalRun) -> Path | None:
    """The datasets_root recorded in the run's config, when it is an existing absolute folder."""
    path = run.dir / "config.yaml"
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            root = (yaml.safe_load(f) or {}).get("datasets_root")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(root, str) and Path(root).is_absolute() and Path(root).is_dir():
        return Path(root)
    return None


def _train_ref(run: EvalRun) -> str | None:
    ds = run.meta.get("dataset")
    return str(ds["ref"]) if isinstance(ds, dict) and ds.get("ref") else None


def dataset_diffs(runs: Sequence[EvalRun], root: str | Path | None = None) -> list[dict[str, Any]]:
    """One entry per candidate whose training dataset version differs from the baseline's and whose two manifests
    resolve: {run, from, to, split, text, details}."""
    base_ref = _train_ref(runs[0])
    if base_ref is None:
        return []
    out: list[dict[str, Any]] = []
    for run in runs[1:]:
        ref = _train_ref(run)
        if ref is None or ref == base_ref:
            continue
        entry = diff_entry(base_ref, ref, root, runs[0], run)
        if entry is not None:
            out.append(entry)
    return out


def diff_entry(base_ref: str, ref: str, root: str | Path | None, base: EvalRun, run: EvalRun) -> dict[str, Any] | None:
    try:
        from ..datasets import diff as data_diff  # type: ignore[attr-defined]
    except ImportError:
        return None  # the datasets package has no diff (yet): say nothing rather than guess
    a, b = _manifest(base_ref, root, base), _manifest(ref, root, run)
    if a is None or b is None:
        return None
    split = str((run.meta.get("dataset") or {}).get("split") or "train")
    try:
        result = data_diff(a, b, split)
    except VerifilyError:
        return None
    details = result.to_dict() if hasattr(result, "to_dict") else result
    return {"run": run.name, "from": base_ref, "to": ref, "split": split, "text": str(details), "details": details}
