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
from ..runs.layout import CONFIG
from .loading import EvalRun


def _manifest(ref: str, root: str | Path | None, run: EvalRun) -> Any | None:
    from ..datasets.registry import recorded_root, resolve_first, search_roots

    try:
        return resolve_first(ref, search_roots(root, recorded_root(run.dir / CONFIG)))
    except VerifilyError:
        return None


def _train_ref(run: EvalRun) -> str | None:
    ds = run.meta.get("dataset")
    return str(ds["ref"]) if isinstance(ds, dict) and ds.get("ref") else None


def dataset_diffs(
    runs: Sequence[EvalRun], root: str | Path | None = None, keys: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One entry per candidate whose training dataset version differs from the baseline's and whose two manifests
    resolve: {run, from, to, split, text, details}. `keys`: tag keys to break the counts down by (the slices)."""
    base_ref = _train_ref(runs[0])
    if base_ref is None:
        return []
    out: list[dict[str, Any]] = []
    for run in runs[1:]:
        ref = _train_ref(run)
        if ref is None or ref == base_ref:
            continue
        entry = diff_entry(base_ref, ref, root, runs[0], run, keys)
        if entry is not None:
            out.append(entry)
    return out


def diff_entry(
    base_ref: str, ref: str, root: str | Path | None, base: EvalRun, run: EvalRun, keys: Sequence[str] = ()
) -> dict[str, Any] | None:
    from ..datasets import diff as data_diff

    a, b = _manifest(base_ref, root, base), _manifest(ref, root, run)
    if a is None or b is None:
        return None
    split = str((run.meta.get("dataset") or {}).get("split") or "train")
    try:
        details = data_diff(a, b, split)
    except VerifilyError:
        return None
    counts = details["splits"].get(split)
    if counts is None:
        return None
    return {
        "run": run.name,
        "from": base_ref,
        "to": ref,
        "split": split,
        "text": phrase(details, split, keys),
        "details": details,
    }


def _n(x: int) -> str:
    return f"{x:,}"


def phrase(details: dict[str, Any], split: str, keys: Sequence[str] = ()) -> str:
    """`ds_demo@v1 → ds_demo@v2 (train): added 1,000 rows (source=synthetic 1,000), removed 1,000 (...), ...`"""
    c = details["splits"][split]
    by_tag = c.get("by_tag") or {}
    key = next((k for k in keys if k in by_tag), next(iter(by_tag), None))

    def parts(kind: str) -> str:
        if key is None:
            return ""
        vals = [(v, n.get(kind, 0)) for v, n in by_tag[key].items() if n.get(kind, 0)]
        vals.sort(key=lambda t: -t[1])
        return f" ({', '.join(f'{key}={v} {_n(n)}' for v, n in vals)})" if vals else ""

    text = f"{details['a']} → {details['b']} ({split}): added {_n(c['added'])} rows{parts('added')}, "
    text += f"removed {_n(c['removed'])}{parts('removed')}"
    if c.get("changed"):
        text += f", changed {_n(c['changed'])}{parts('changed')}"
    return text + f"; {_n(c.get('unchanged', 0))} unchanged."
