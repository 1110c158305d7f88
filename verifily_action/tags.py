"""Tags and slices as text, the one definition each: the value of a missing tag, a row's tag value, a slice's label
(`source=human&origin=imdb`, itself a slice expression: the grammar is in evaluate/slices.py), and the comma lists
that CLI options and Action inputs accept."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

NONE_TAG = "(none)"  # the slice value of rows that lack a tag key


def tag_value(tags: Mapping[str, object] | None, key: str) -> str:
    """The row's value for tag `key` as text; NONE_TAG when the row lacks it."""
    value = (tags or {}).get(key)
    return NONE_TAG if value is None else str(value)


_PLAIN = re.compile(r'[^&×"<>,\n]*')  # a value written without quotes in a slice expression


def _value_text(value: object) -> str:
    """A tag value as a slice expression writes it: quoted when it would read otherwise (`*`, `&`, `×`, `<`, `>`,
    a comma, a quote, surrounding spaces, empty)."""
    v = str(value)
    if v and v != "*" and v == v.strip() and _PLAIN.fullmatch(v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def slice_label(key: Mapping[str, object], overall: str = "overall") -> str:
    """`source=human&origin=imdb` (a slice expression naming this one slice); `overall` for the empty key (the
    whole set)."""
    return "&".join(f"{k}={_value_text(v)}" for k, v in key.items()) if key else overall


def comma_list(values: str | Iterable[str] | None, *, unique: bool = False) -> list[str]:
    """Items of comma- (or newline-) separated text, or of several such texts (a repeated option), stripped, empty
    items dropped; `unique` drops repeats, keeping the first."""
    texts = [values] if isinstance(values, str) else list(values or [])
    out: list[str] = []
    for text in texts:
        for item in re.split(r"[,\n]", text):
            item = item.strip()
            if item and not (unique and item in out):
                out.append(item)
    return out
