"""Data checks (roadmap shortcut #5): empty or whitespace-only texts, exact duplicate rows, and rows whose text
appears in two splits (train/eval leakage). Counted per split, with the first few locations as `file:line`.

Memory stays flat: each row leaves only an 8-byte content key, an 8-byte text key and its location in numpy arrays;
duplicates and overlaps are found by sorting them, never by holding the rows.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from ..hashing import canonical_json
from .loading import check_not_empty, display_path, row_spec
from .manifest import Manifest
from .rows import Collector, scan_file

MAX_EXAMPLES = 20  # locations listed per check; counts are always complete
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The text compared for leakage: case-folded, whitespace collapsed, trimmed."""
    return _SPACES.sub(" ", text).strip().casefold()


def _key(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


@dataclass
class Finding:
    check: str  # empty_text | duplicate | leakage | identical_pair
    file: str
    line: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "file": self.file, "line": self.line, "detail": self.detail}


@dataclass
class DataReport:
    """What the checks found. `to_dict()` is what runs record in run_meta.json (`data_report`)."""

    ref: str
    dataset_hash: str
    rows: dict[str, int] = field(default_factory=dict)
    empty_text: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)  # rows repeating an earlier row of the same split
    leakage: dict[str, int] = field(default_factory=dict)  # "train/eval" -> rows of the later split seen earlier
    # dpo rows whose chosen equals rejected: nothing to prefer, left out of training and eval (a note, not a finding)
    identical_pairs: dict[str, int] = field(default_factory=dict)
    examples: list[Finding] = field(default_factory=list)
    row_problems: list[Problem] = field(default_factory=list)  # invalid rows (first few); they are not checked
    row_problem_total: int = 0
    warnings: list[Problem] = field(default_factory=list)

    @property
    def findings(self) -> int:
        return sum(self.empty_text.values()) + sum(self.duplicates.values()) + sum(self.leakage.values())

    @property
    def clean(self) -> bool:
        return self.findings == 0 and self.row_problem_total == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "dataset": self.ref,
            "dataset_hash": self.dataset_hash,
            "rows": self.rows,
            "empty_text": self.empty_text,
            "duplicates": self.duplicates,
            "leakage": self.leakage,
            **({"identical_pairs": self.identical_pairs} if self.identical_pairs else {}),
            "findings": self.findings,
            "examples": [f.to_dict() for f in self.examples],
            "row_problem_total": self.row_problem_total,
            "row_problems": [p.to_dict() for p in self.row_problems],
            "warnings": [w.to_dict() for w in self.warnings],
        }

    def notes(self) -> list[str]:
        """The non-zero counts, one line each, the last saying where the locations are: a training run's notes."""
        from ..runs.layout import RUN_META

        def rows(n: int) -> str:
            return f"{n} row{'s' * (n != 1)}"

        out = [f"data check: {s}: {rows(n)} with empty text" for s, n in self.empty_text.items() if n]
        out += [f"data check: {s}: {rows(n)} repeating an earlier row (duplicates)"
                for s, n in self.duplicates.items() if n]  # fmt: skip
        for pair, n in self.leakage.items():
            if n:
                a, b = pair.split("/")
                out.append(f"data check: {b}: {rows(n)} with the same text as a row of {a} (leakage)")
        if out and any(":" in s for s in self.rows):  # a split of another version (eval_dataset) took part
            out[-1] += f"; the run's {RUN_META} (data_report) lists where"
        elif out:
            out[-1] += f"; `verifily dataset verify {self.ref}` shows where"
        return out

    def summary_lines(self) -> list[str]:
        out = []
        for s, n in self.rows.items():
            out.append(
                f"{s}: {n} rows, {self.empty_text.get(s, 0)} empty text, {self.duplicates.get(s, 0)} exact duplicates"
            )
        for pair, n in self.leakage.items():
            a, b = pair.split("/")
            out.append(f"leakage {pair}: {n} rows of {b} have the same text as a row of {a}")
        for s, n in self.identical_pairs.items():
            if n:
                out.append(f"{s}: {n} rows with chosen equal to rejected (dpo leaves them out)")
        return out


@dataclass
class _SplitKeys:
    content: array = field(default_factory=lambda: array("q"))
    text: array = field(default_factory=lambda: array("q"))
    where: array = field(default_factory=lambda: array("q"))  # file index << 40 | line
    files: list[str] = field(default_factory=list)
    has_text: bool = True  # the split's rows have a text or prompt to compare for leakage

    def loc(self, i: int) -> tuple[str, int]:
        w = self.where[i]
        return self.files[w >> 40], w & ((1 << 40) - 1)


def check_data(
    manifest: Manifest,
    splits: list[str] | None = None,
    others: Sequence[tuple[Manifest, str]] = (),
    hash_failed: Collection[str] = (),
    on_row: Callable[[str, dict[str, Any]], None] | None = None,
    ids_per_split: bool = False,
) -> DataReport:
    """Run the data checks over `splits` (default: all, in manifest order), plus `others`: splits of other dataset
    versions used with this one (a run's separate eval dataset), named `<ref>:<split>`, so a train row that reappears
    in another version's eval split counts as leakage too. Files are not hash-verified here: call `load_split` (or
    `dataset verify`) for that. Invalid rows, empty splits and files whose row count differs from the manifest's
    are `row_problems`; `hash_failed` names files (as displayed) whose hash the caller found changed, so their row
    counts are not checked as well (the count is one more symptom of the same change). `on_row(label, row)` sees
    every valid row, so a caller learns more in the same pass (train/streaming.py: the label set); `ids_per_split`
    checks ids for duplicates within each split, as `load_split` does, instead of across the version's splits."""
    import numpy as np

    names = list(splits) if splits is not None else manifest.split_names()
    parts = [(s, manifest, s) for s in names] + [(f"{m.ref}:{s}", m, s) for m, s in others]
    report = DataReport(ref=manifest.ref, dataset_hash=manifest.dataset_hash())
    collectors: dict[int, Collector] = {}  # one per manifest: ids are unique within a version, not across them
    keys: dict[str, _SplitKeys] = {}

    def example(check: str, file: str, line: int, detail: str) -> None:
        if len(report.examples) < MAX_EXAMPLES:
            report.examples.append(Finding(check, file, line, detail))

    for label, m, split in parts:
        col = collectors.setdefault(hash((id(m), split)) if ids_per_split else id(m), Collector())
        spec = row_spec(m)
        text_role = next((r for r in ("text", "prompt") if spec.fields.get(r)), None)
        text_roles = [r for r in ("text", "prompt", "response", "chosen", "rejected") if spec.fields.get(r)]
        pairs = bool(spec.fields.get("chosen") and spec.fields.get("rejected"))
        k = keys[label] = _SplitKeys(has_text=text_role is not None)
        rows = empty = same = 0
        first_file = len(col.file_rows)
        for fi, entry in enumerate(m.require_split(split)):
            shown = display_path(m, entry)
            k.files.append(shown)
            expected = None if shown in hash_failed else entry.rows
            for line, row in scan_file(m.file_path(entry), shown, spec, col, expected):
                rows += 1
                if on_row is not None:
                    on_row(label, row)
                blank = [r for r in text_roles if not row[r].strip()]
                if blank:
                    empty += 1
                    example("empty_text", shown, line, f"{'/'.join(blank)} is empty or whitespace only")
                if pairs and row["chosen"] == row["rejected"]:
                    same += 1
                    example("identical_pair", shown, line, "chosen equals rejected: nothing to prefer")
                k.content.append(_key(canonical_json({r: row[r] for r in spec.content_roles})))
                k.text.append(_key(normalize_text(row[text_role]).encode()) if text_role else 0)
                k.where.append((fi << 40) | line)
        check_not_empty(m, split, col, first_file)
        report.rows[label] = rows
        report.empty_text[label] = empty
        if pairs:
            report.identical_pairs[label] = same
        report.duplicates[label] = _duplicates(np, k, example)
    labels = list(keys)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if keys[a].has_text and keys[b].has_text:
                report.leakage[f"{a}/{b}"] = _leakage(np, keys[a], keys[b], a, example)
    for col in collectors.values():
        col.check_duplicate_ids()
        report.row_problems += col.problems
        report.row_problem_total += col.total
        report.warnings += col.warnings
    return report


def _duplicates(np, k: _SplitKeys, example) -> int:
    if not k.content:
        return 0
    h = np.frombuffer(k.content, dtype=np.int64)
    order = np.argsort(h, kind="stable")  # stable: within equal keys, file order, so the first stays the original
    sh = h[order]
    dup = np.flatnonzero(sh[1:] == sh[:-1]) + 1
    for i in dup[:MAX_EXAMPLES]:
        f0, l0 = k.loc(int(order[i - 1]))
        f, line = k.loc(int(order[i]))
        example("duplicate", f, line, f"same content as {f0}:{l0}")
    return int(dup.size)


def _leakage(np, a: _SplitKeys, b: _SplitKeys, a_name: str, example) -> int:
    if not a.text or not b.text:
        return 0
    ha, hb = np.frombuffer(a.text, dtype=np.int64), np.frombuffer(b.text, dtype=np.int64)
    ua, first = np.unique(ha, return_index=True)
    shared = np.isin(hb, ua)
    idx = np.flatnonzero(shared)
    for i in idx[:MAX_EXAMPLES]:
        j = first[np.searchsorted(ua, hb[i])]
        fa, la = a.loc(int(j))
        f, line = b.loc(int(i))
        example("leakage", f, line, f"same text as {a_name} row {fa}:{la}")
    return int(idx.size)
