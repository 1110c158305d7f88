"""Slices of an eval set, named by slice expressions: the grammar, its parser, and the slices an expression names.

One grammar everywhere a slice is named: `eval.slice_by` and `eval.slices` in the config, `verifily eval --slice-by`
and `--slice`, `verifily compare --slice-by`, the Action's `slice-by` input and the `@SLICE` of a gate rule::

    expression := term { AND term }
    AND        := "&"                       (or "×", the same thing)
    term       := key [ "=" value ]         a bare key means key=*
    key        := [A-Za-z0-9_][A-Za-z0-9_.-]*   (a tag key, as manifests allow them)
    value      := "*"                       every value of the key: one slice per value
                | '"' text '"'              any text; \\" and \\\\ inside (a literal *, &, ×, <, >, comma)
                | text                      up to the next AND (or the end), no comma, surrounding spaces dropped

An expression names the slices where all its terms hold (each key at most once):

    source=human                    one slice
    source=human & origin=imdb      one slice: the rows with both tags (AND)
    source=*   (or: source)         one slice per value of source
    source=* & origin=*             one per combination of a source and an origin that some row has: the cross
    (source×origin, source&origin)  product of the two keys, combinations no row has left out
    source=human & origin=*         one per origin among the human rows

Lists of expressions (`--slice-by a,b`, `eval.slice_by`, the `slice-by` input) are separated by commas or new lines
outside quotes; `eval --slice` takes one expression per option and, as it always has, also reads a comma as AND.
A slice's label (tags.slice_label) is itself an expression, `source=human&origin=imdb`, so it can be pasted into a
gate. Bad input: a syntax error names the expression and the character position (1-based); a key no row has is an
error; a value no row has is a warning naming the values there are (the slice is still shown, with n=0).

A slice is a set of example indices; the runner computes every metric with its bootstrap interval on each one.
Slices smaller than the configured minimum are flagged `too_small` (their numbers are still shown, marked, because
hiding them would hide where the data is thin). Rows without a tag key fall into the value NONE_TAG.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Problem, VerifilyError
from ..tags import NONE_TAG, slice_label, tag_value

ANDS = ("&", "×")
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
SYNTAX = "key=value terms joined by &, key=* for every value: source=human&origin=imdb, source=*&origin=*"
Warn = Callable[[str], None]


class SliceSyntaxError(VerifilyError):
    """A slice expression that does not parse; `why` and `position` (1-based) let a caller frame it (gates)."""

    def __init__(self, text: str, why: str, position: int, origin: str, where: Problem | None = None) -> None:
        caret = Problem(f"{text}\n{' ' * (position - 1)}^")
        if where is not None:
            caret = Problem(f"{where.message}\n{caret.message}", where.file, where.line, where.column, where.json_path)
        super().__init__(
            f"bad slice expression {text!r} ({origin}): {why} at position {position}",
            hint=f"write {SYNTAX}",
            problems=[caret],
        )
        self.why, self.position = why, position


@dataclass(frozen=True)
class Term:
    key: str
    value: str | None  # None: every value of the key


@dataclass(frozen=True)
class SliceExpr:
    """A parsed expression. `origin` says where it was written (an option, a config file:line), for errors."""

    terms: tuple[Term, ...]
    origin: str = "--slice-by"

    @property
    def keys(self) -> list[str]:
        return [t.key for t in self.terms]

    @property
    def wildcard(self) -> bool:
        return any(t.value is None for t in self.terms)

    @property
    def text(self) -> str:
        """The canonical spelling: `source` for one wildcard key, else `source=human&origin=*`."""
        if len(self.terms) == 1 and self.terms[0].value is None:
            return self.terms[0].key
        return "&".join(t.key + "=*" if t.value is None else slice_label({t.key: t.value}) for t in self.terms)

    def matches(self, key: Mapping[str, str]) -> bool:
        """Whether a concrete slice key ({tag key: value}) is one of the slices this expression names."""
        if set(key) != set(self.keys):
            return False
        return all(t.value is None or key[t.key] == t.value for t in self.terms)

    def same(self, other: SliceExpr) -> bool:
        return {(t.key, t.value) for t in self.terms} == {(t.key, t.value) for t in other.terms}


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


# ---------------------------------------------------------------- parsing


def scan_expression(
    text: str, start: int = 0, *, stop: str = "", comma_and: bool = False, origin: str = "--slice-by"
) -> tuple[SliceExpr, int]:
    """Parse the expression at `text[start:]` up to the end or an unquoted character of `stop` (a gate rule's `<`
    or `>`); returns it and where it ended. Errors give positions in the whole `text`."""
    ands = ANDS + ((",",) if comma_and else ())

    def fail(why: str, at: int) -> SliceSyntaxError:
        return SliceSyntaxError(text, why, at + 1, origin)

    def skip(p: int) -> int:
        while p < len(text) and text[p].isspace():
            p += 1
        return p

    terms: list[Term] = []
    joiner: tuple[str, int] | None = None  # the AND just read and where
    pos = skip(start)
    while True:
        if pos >= len(text) or text[pos] in stop or text[pos] in ands:
            if joiner is not None:
                raise fail(f"a term is missing after {joiner[0]!r}", joiner[1])
            if pos < len(text) and text[pos] in ands:
                raise fail(f"a term is missing before {text[pos]!r}", pos)
            raise fail("the expression is empty", pos)
        m = _KEY.match(text, pos)
        if not m:
            raise fail(f"{text[pos]!r} cannot start a tag key (letters, digits, _ . - only)", pos)
        key, key_at = m[0], pos
        after = text[m.end()] if m.end() < len(text) else " "
        if not after.isspace() and after != "=" and after not in ands and after not in stop:
            raise fail(f"{after!r} cannot be in a tag key (letters, digits, _ . - only)", m.end())
        pos = skip(m.end())
        value: str | None = None
        if pos < len(text) and text[pos] == "=":
            pos = skip(pos + 1)
            if pos < len(text) and text[pos] == '"':
                value, pos = _quoted(text, pos, fail)
            else:
                end = pos
                while end < len(text) and text[end] not in ands and text[end] not in stop:
                    if text[end] == ",":  # lists split on commas first: a comma here is a slip
                        raise fail("a comma in a value (join terms with &; quote a value that holds a comma)", end)
                    end += 1
                raw = text[pos:end].strip()
                if not raw:
                    raise fail(f"no value after '{key}=' (write {key}=* for every value)", pos)
                value = None if raw == "*" else raw
                pos = end
        elif pos < len(text) and text[pos] not in ands and text[pos] not in stop:
            raise fail(f"expected '=' or '&' after the key {key!r}", pos)
        if key in (t.key for t in terms):
            raise fail(f"the key {key!r} appears twice", key_at)
        terms.append(Term(key, value))
        pos = skip(pos)
        if pos >= len(text) or text[pos] in stop:
            return SliceExpr(tuple(terms), origin), pos
        if text[pos] not in ands:
            raise fail(f"unexpected {text[pos]!r}; terms are joined by &", pos)
        joiner = (text[pos], pos)
        pos = skip(pos + 1)


def _quoted(text: str, pos: int, fail: Callable[[str, int], SliceSyntaxError]) -> tuple[str, int]:
    out, p = [], pos + 1
    while p < len(text):
        c = text[p]
        if c == "\\" and p + 1 < len(text):
            out.append(text[p + 1])
            p += 2
            continue
        if c == '"':
            return "".join(out), p + 1
        out.append(c)
        p += 1
    raise fail("the quoted value is not closed", pos)


def parse_expression(text: str, origin: str = "--slice-by", *, comma_and: bool = False) -> SliceExpr:
    """One whole expression, e.g. `source=human & origin=*`."""
    expr, _ = scan_expression(text, comma_and=comma_and, origin=origin)
    return expr


def parse_slice(spec: str) -> SliceExpr:
    """`eval --slice`'s expression: the grammar above, a comma also meaning AND."""
    return parse_expression(spec, "--slice", comma_and=True)


def split_list(values: str | Sequence[str] | None) -> list[str]:
    """Items of comma- or newline-separated texts (a repeated option), split outside double quotes, stripped."""
    out: list[str] = []
    for text in [values] if isinstance(values, str) else list(values or []):
        item, quoted, escaped = "", False, False
        for c in text + ",":
            if not quoted and c in ",\n":
                out += [item.strip()] if item.strip() else []
                item = ""
                continue
            item += c
            escaped, quoted = (False, quoted) if escaped else (c == "\\" and quoted, quoted ^ (c == '"'))
    return out


def parse_list(values: str | Sequence[str] | None, origin: str = "--slice-by") -> list[SliceExpr]:
    """`["source,origin", "source&origin"]` -> three expressions, repeats dropped."""
    return dedupe([parse_expression(item, origin) for item in split_list(values)])


def dedupe(exprs: Sequence[SliceExpr]) -> list[SliceExpr]:
    out: list[SliceExpr] = []
    for e in exprs:
        if not any(e.same(o) for o in out):
            out.append(e)
    return out


def keys_of(exprs: Sequence[SliceExpr]) -> list[str]:
    """Every tag key the expressions name, first seen first."""
    return list(dict.fromkeys(k for e in exprs for k in e.keys))


def as_expression(item: str | Mapping[str, str] | SliceExpr, origin: str) -> SliceExpr:
    """An expression from its text, a concrete slice key ({tag key: value}) or itself."""
    if isinstance(item, SliceExpr):
        return item
    if isinstance(item, str):
        return parse_expression(item, origin, comma_and=origin == "--slice")
    return SliceExpr(tuple(Term(str(k), str(v)) for k, v in item.items()), origin)


def config_expressions(section: str, items: Sequence[str], config_file: str | Path | None) -> list[SliceExpr]:
    """`eval.<section>` of a config, each expression's origin `file:line:col (eval.slices[i])` when the file can be
    read again for positions; a syntax error names the same place."""
    src = None
    if config_file is not None and items:
        from .. import yamlsource

        with contextlib.suppress(VerifilyError):  # positions are a courtesy: the config was read already
            src = yamlsource.load(config_file, kind="config")
    out = []
    for i, text in enumerate(items):
        line, col = src.where(("eval", section, i)) if src is not None else (None, None)
        loc = Problem(f"eval.{section}[{i}]", str(config_file) if src is not None else None, line, col)
        origin = f"{loc.location()} {loc.message}".strip()
        try:
            out.append(parse_expression(text, origin))
        except SliceSyntaxError as e:
            raise SliceSyntaxError(text, e.why, e.position, origin, loc) from None
    return out


def eval_slicing(
    ecfg: Any,
    slice_by: Sequence[str | SliceExpr] | None,
    cross: Sequence[str | Mapping[str, str] | SliceExpr] | None,
    config_file: str | Path | None = None,
) -> tuple[list[SliceExpr], list[SliceExpr]]:
    """What `eval` slices by: `slice_by` (`--slice-by`; None: eval.slice_by), and `cross` (`--slice`; None:
    eval.slices). `config_file` (the run's config.yaml) gives the config's expressions their file:line."""
    if slice_by is not None:
        by = [as_expression(s, "--slice-by") for s in slice_by]
    else:
        by = config_expressions("slice_by", ecfg.slice_by, config_file)
    if cross is not None:
        more = [as_expression(s, "--slice") for s in cross]
    else:
        more = config_expressions("slices", getattr(ecfg, "slices", []), config_file)
    return dedupe(by), dedupe(more)


# ---------------------------------------------------------------- slices over data


def existing_keys(tags: Sequence[Mapping[str, object] | None]) -> list[str]:
    """Tag keys that at least one row has a value for."""
    return sorted({k for t in tags for k, v in (t or {}).items() if v is not None})


def check_keys(exprs: Sequence[SliceExpr], tag_sets: Sequence[Sequence[Mapping[str, object] | None]]) -> None:
    """A key that no row (of any run) has is an error naming each expression that uses it."""
    have = sorted({k for tags in tag_sets for k in existing_keys(tags)})
    bad = [(k, e) for e in exprs for k in e.keys if k not in have]
    if bad:
        missing = list(dict.fromkeys(k for k, _ in bad))
        problems = [Problem(f"tag key {k!r} not found in any row (slice {e.text!r}, {e.origin})") for k, e in bad]
        raise VerifilyError(
            f"no eval row has the tag key{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            problems=problems,
            hint=f"tag keys in this eval set: {', '.join(have) if have else '(none: the rows have no tags)'}",
        )


def _ordered(values: Sequence[np.ndarray]) -> dict[str, int]:
    """Rank of each value over all sets: most common first, NONE_TAG last, then by name."""
    counts: Counter[str] = Counter()
    for v in values:
        counts.update(v.tolist())
    order = sorted(counts.items(), key=lambda kv: (kv[0] == NONE_TAG, -kv[1], kv[0]))
    return {v: i for i, (v, _) in enumerate(order)}


def expand(
    exprs: Sequence[SliceExpr],
    tag_sets: Sequence[Sequence[Mapping[str, object] | None]],
    warn: Warn | None = None,
) -> list[dict[str, str]]:
    """The concrete slice keys the expressions name over one or more sets of rows (one per run), repeats dropped.
    Wildcards take the combinations some row has; a fixed value no row has is warned about and kept (n=0)."""
    check_keys(exprs, tag_sets)
    columns: dict[str, list[np.ndarray]] = {}
    for k in keys_of(exprs):
        columns[k] = [np.array([tag_value(t, k) for t in tags], dtype=object) for tags in tag_sets]
    ranks = {k: _ordered(cols) for k, cols in columns.items()}
    out: list[dict[str, str]] = []
    for e in exprs:
        for t in e.terms:
            if t.value is not None and t.value not in ranks[t.key] and warn is not None:
                known = ", ".join(ranks[t.key])
                warn(f"no eval row has {t.key}={t.value} (slice {e.text!r}, {e.origin}); values of {t.key}: {known}")
        found: list[dict[str, str]] = []
        if not e.wildcard:
            found.append({t.key: str(t.value) for t in e.terms})
        else:
            combos: set[tuple[str, ...]] = set()
            for s in range(len(tag_sets)):
                mask = np.ones(len(tag_sets[s]), dtype=bool)
                for t in e.terms:
                    if t.value is not None:
                        mask &= columns[t.key][s] == t.value
                combos.update(zip(*(columns[t.key][s][mask].tolist() for t in e.terms), strict=True))
            for combo in sorted(combos, key=lambda c: [ranks[k].get(v, -1) for k, v in zip(e.keys, c, strict=True)]):
                found.append(dict(zip(e.keys, combo, strict=True)))
        for key in found:
            if not any(key == o for o in out):
                out.append(key)
    return out


def mask(tags: Sequence[Mapping[str, object] | None], key: Mapping[str, str]) -> np.ndarray:
    """Rows of `tags` in the slice `key` (every pair holds)."""
    m = np.ones(len(tags), dtype=bool)
    for k, v in key.items():
        m &= np.array([tag_value(t, k) == v for t in tags], dtype=bool)
    return m


def normalize(
    slice_by: Sequence[str | SliceExpr], cross: Sequence[str | Mapping[str, str] | SliceExpr] = ()
) -> list[SliceExpr]:
    """Expressions from `slice_by` and then `cross` (`--slice`: a comma is also AND; a mapping is one slice)."""
    exprs = [as_expression(s, "--slice-by / eval.slice_by") for s in slice_by]
    return dedupe(exprs + [as_expression(s, "--slice") for s in cross])


def build_slices(
    tags: Sequence[Mapping[str, object] | None],
    slice_by: Sequence[str | SliceExpr] = (),
    cross: Sequence[str | Mapping[str, str] | SliceExpr] = (),
    min_size: int = 30,
    warn: Warn | None = None,
) -> list[Slice]:
    """The slices named by `slice_by` (expressions; a bare key is every value of it) and then `cross` (expressions
    or concrete keys), in that order, each once."""
    out = []
    for key in expand(normalize(slice_by, cross), [tags], warn):
        idx = np.flatnonzero(mask(tags, key))
        out.append(Slice(key, idx, len(idx) < min_size))
    return out
