"""Tag slices of an eval set: one per (tag key, value) for the `--slice-by` keys, plus AND-slices from `--slice`.

A slice is a set of example indices; the runner computes every metric with its bootstrap interval on each one.
Slices smaller than the configured minimum are flagged `too_small` (their numbers are still shown, marked, because
hiding them would hide where the data is thin). Rows without a tag key fall into the value NONE_TAG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import Problem, VerifilyError
from ..tags import NONE_TAG, comma_list, slice_label, tag_value


@dataclass
class Slice:
    key: dict[str, str]  # {tag key: value}; several pairs for a cross-tag (AND) slice
    indices: np.ndarray
    too_small: bool

    @property
    def n(self) -> int:
        return int(len(self.indices))

    @property
    def name(self) -> str:
        return slice_label(self.key)


def parse_slice(spec: str) -> dict[str, str]:
    """`"source=human,difficulty=hard"` -> {"source": "human", "difficulty": "hard"}."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise VerifilyError(
                f"bad --slice {spec!r}: {part.strip()!r} is not key=value",
                hint='write an AND of tag pairs, e.g. --slice "source=human,difficulty=hard"',
            )
        if key in out:
            raise VerifilyError(f"bad --slice {spec!r}: the key {key!r} appears twice")
        out[key] = value
    return out


def parse_slice_by(values: Sequence[str]) -> list[str]:
    """`["source,origin", "lang"]` -> ["source", "origin", "lang"] (comma lists allowed, duplicates dropped)."""
    return comma_list(values, unique=True)


def existing_keys(tags: Sequence[Mapping[str, object] | None]) -> list[str]:
    """Tag keys that at least one row has a value for."""
    return sorted({k for t in tags for k, v in (t or {}).items() if v is not None})


def _check_keys(keys: Sequence[str], tags: Sequence[Mapping[str, object] | None], origin: str) -> None:
    have = existing_keys(tags)
    missing = [k for k in keys if k not in have]
    if missing:
        raise VerifilyError(
            f"no eval row has the tag key{'s' if len(missing) > 1 else ''} {', '.join(missing)} ({origin})",
            problems=[Problem(f"tag key {k!r} not found in any row") for k in missing],
            hint=f"tag keys in this eval set: {', '.join(have) if have else '(none: the rows have no tags)'}",
        )


def build_slices(
    tags: Sequence[Mapping[str, object] | None],
    slice_by: Sequence[str] = (),
    cross: Sequence[Mapping[str, str]] = (),
    min_size: int = 30,
) -> list[Slice]:
    """Slices for every value of each `slice_by` key (most common first), then each AND-slice of `cross`."""
    _check_keys(slice_by, tags, "--slice-by / eval.slice_by")
    _check_keys(sorted({k for c in cross for k in c}), tags, "--slice")
    out: list[Slice] = []
    for key in slice_by:
        values = np.array([tag_value(t, key) for t in tags], dtype=object)
        counts = Counter(values.tolist())
        # Most common first; NONE_TAG last so real values lead the table.
        for value, _ in sorted(counts.items(), key=lambda kv: (kv[0] == NONE_TAG, -kv[1], kv[0])):
            idx = np.flatnonzero(values == value)
            out.append(Slice({key: value}, idx, len(idx) < min_size))
    for pairs in cross:
        mask = np.ones(len(tags), dtype=bool)
        for key, value in pairs.items():
            pair_values = [tag_value(t, key) for t in tags]
            if value not in pair_values:
                seen = sorted(set(pair_values))
                raise VerifilyError(
                    f"no eval row has {key}={value} (--slice {slice_label(pairs)})",
                    hint=f"values of {key}: {', '.join(seen)}",
                )
            mask &= np.array([v == value for v in pair_values], dtype=bool)
        idx = np.flatnonzero(mask)
        out.append(Slice(dict(pairs), idx, len(idx) < min_size))
    return out
