"""Read JSONL rows one at a time, check each against the manifest's field mapping and turn it into a canonical row.

Every problem is collected with `file:line[:col]` so one report shows all of them (capped at `MAX_SHOWN`, with the
total count). Memory stays flat: a line is read, checked and handed on; only 13 bytes per row are kept (a hash of
its id and where it was) to find duplicate ids at the end.

Decisions on the "almost JSONL" cases:
- a UTF-8 BOM, CRLF line ends and blank lines between rows are errors: they change the file's bytes (and so its
  sha256) without changing its rows, which is how a checkout with `core.autocrlf` or a Windows editor makes a dataset
  fail verification on one machine and not another. The hint says how to fix them. CRLF is reported once per file
  with its count, not on every line.
- blank lines at the very end of a file are tolerated with a warning: they carry no row, cannot shift any row's
  line number, and are the most common editor artifact.
- a row without an id gets `sha256(canonical JSON of its content roles)[:16]` (text/prompt/response/label, not its
  tags), so the same example pairs across versions even when its tags change. Duplicate explicit ids are errors
  (pairing would be ambiguous); rows whose content ids collide are exact duplicates, which `check_data` reports.
- valid JSON that is not valid data is refused: a key twice in one object (`{"id": 1, "id": 2}`: JSON parsers
  disagree on which wins) and a lone UTF-16 surrogate (`"\ud800"`: not a character, so no UTF-8 file, Arrow
  column or hash can hold it).
- a row longer than the manifest's `max_row_bytes` is refused without being read into memory (a single 50 MB row
  cost 11 GB in training); every non-blank line counts as a row, valid or not, so one bad row is one problem and
  never also a "manifest says N rows, the file has N-1".
- only regular files are read: a FIFO would block forever and a device never ends.
"""

from __future__ import annotations

import json
import os
import re
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import MAX_PROBLEMS_SHOWN, Problem
from ..hashing import canonical_json, sha256_bytes

MAX_SHOWN = MAX_PROBLEMS_SHOWN
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SKIP = 1024 * 1024  # bytes read at a time while skipping the rest of an over-long line


@dataclass
class Collector:
    """Problems and warnings gathered while scanning; keeps the first MAX_SHOWN of each and counts all."""

    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    warnings: list[Problem] = field(default_factory=list)
    # per file scanned, in order: its non-blank lines, valid or not (what a manifest's `rows` counts); None when
    # the file could not be read
    file_rows: list[int | None] = field(default_factory=list)
    # for duplicate-id detection: hash of each explicit id, the file index and line it came from
    _id_hashes: array = field(default_factory=lambda: array("q"))
    _id_where: array = field(default_factory=lambda: array("l"))
    _files: list[str] = field(default_factory=list)

    def add(
        self,
        message: str,
        file: str,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
        json_path: str | None = None,
    ) -> None:
        self.total += 1
        if len(self.problems) < MAX_SHOWN:
            self.problems.append(Problem(message, file=file, line=line, column=column, json_path=json_path, hint=hint))

    def warn(self, message: str, file: str, line: int | None = None, hint=None) -> None:
        self.warnings.append(Problem(message, file=file, line=line, hint=hint))

    def note_id(self, row_id: str, file_index: int, line: int) -> None:
        self._id_hashes.append(hash(row_id))
        self._id_where.append((file_index << 40) | line)

    def check_duplicate_ids(self) -> None:
        """Report every explicit id seen more than once (numpy sort over 8-byte hashes: flat memory)."""
        import numpy as np

        if not self._id_hashes:
            return
        h = np.frombuffer(self._id_hashes, dtype=np.int64)
        order = np.argsort(h, kind="stable")
        sh = h[order]
        dup = np.flatnonzero(sh[1:] == sh[:-1]) + 1
        where = np.frombuffer(self._id_where, dtype=np.int64)
        for i in dup:
            first, again = int(where[order[i - 1]]), int(where[order[i]])
            f, line = self._files[again >> 40], again & ((1 << 40) - 1)
            f0, line0 = self._files[first >> 40], first & ((1 << 40) - 1)
            self.add(
                f"duplicate id (first seen at {f0}:{line0})",
                file=f,
                line=line,
                hint="ids must be unique within a split so examples pair across runs",
            )


@dataclass(frozen=True)
class RowSpec:
    """What a row must hold: role -> row key (None: unused), and the allowed tag keys."""

    fields: dict[str, str | None]
    tag_keys: tuple[str, ...]
    max_row_bytes: int | None = None  # None: no cap (the manifest's `max_row_bytes` sets it when loading)

    @property
    def content_roles(self) -> tuple[str, ...]:
        return tuple(r for r in ("text", "prompt", "response", "label", "chosen", "rejected") if self.fields.get(r))


def content_id(row: dict[str, Any], roles: tuple[str, ...]) -> str:
    """The stable id of a row without one: first 16 hex chars of sha256 over its content roles."""
    return sha256_bytes(canonical_json({r: row[r] for r in roles}))[:16]


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a data file (missing, a folder, a pipe or device), or None when it can."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot read the file: {e.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"), (stat.S_ISSOCK, "a socket"))
    return f"{next((name for test, name in kinds if test(mode)), 'a special file')}, not a regular file"


def iter_lines(f: IO[bytes], max_bytes: int | None) -> Iterator[tuple[int, bytes | None, int]]:
    """`(line number, line bytes, length)` of each line (line end included); a line longer than `max_bytes` is
    skipped in chunks and given as None with its length, so no over-long line is ever held in memory."""
    cap = max_bytes + 2 if max_bytes is not None else -1  # room for CRLF after a row of exactly max_bytes
    line_no = 0
    while raw := f.readline(cap):
        line_no += 1
        if raw.endswith(b"\n") or max_bytes is None or len(raw) < cap:
            yield line_no, raw, len(raw)
            continue
        size = len(raw)
        while (more := f.readline(_SKIP)) and (size := size + len(more)) and not more.endswith(b"\n"):
            pass
        yield line_no, None, size


def scan_file(
    path: Path, display: str, spec: RowSpec, col: Collector, expected_rows: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line, canonical_row)` for every valid row of a JSONL file; problems go to `col` (one collector may
    scan many files: ids are located by the file's position in it). `expected_rows`: the manifest's row count for
    this file, checked against its non-blank lines (pass None when its hash did not match: the count is then
    one more symptom of the same change)."""
    file_index = len(col._files)
    col._files.append(display)
    col.file_rows.append(None)
    why = file_problem(path)
    if why is not None:
        col.add(why, display, hint=None if why == "file not found" else "a data file must be a regular file")
        return
    crlf, first_crlf, rows = 0, 0, 0
    blanks: list[int] = []  # blank lines not yet followed by a row (trailing ones become a warning)
    roles = spec.content_roles
    with open(path, "rb") as f:
        for line_no, raw, size in iter_lines(f, spec.max_row_bytes):
            if raw is None:
                rows += 1
                _flush_blanks(blanks, display, col)
                col.add(
                    f"row is {size:,} bytes; a row may be at most {spec.max_row_bytes:,} bytes",
                    display,
                    line_no,
                    hint="raise `max_row_bytes` in the dataset's manifest if rows this long are intended",
                )
                continue
            if line_no == 1 and raw.startswith(_BOM):
                col.add("file starts with a UTF-8 BOM", display, 1, 1, hint="save the file as UTF-8 without BOM")
                raw = raw[len(_BOM) :]
            if raw.endswith(b"\r\n"):
                crlf += 1
                first_crlf = first_crlf or line_no
                raw = raw[:-2]
            elif raw.endswith(b"\n"):
                raw = raw[:-1]
            if not raw.strip():
                blanks.append(line_no)
                continue
            rows += 1
            _flush_blanks(blanks, display, col)
            row = _parse(raw, display, line_no, col)
            if row is None:
                continue
            out = _canonical(row, spec, display, line_no, col)
            if out is None:
                continue
            if out["id"] is None:
                out["id"] = content_id(out, roles)
            else:
                col.note_id(out["id"], file_index, line_no)
            yield line_no, out
    col.file_rows[file_index] = rows
    if crlf:
        col.add(
            f"CRLF line endings on {crlf} line{'s' * (crlf != 1)} (first here)",
            display,
            first_crlf,
            hint="convert to LF (e.g. `dos2unix FILE`) and mark *.jsonl as `-text` in .gitattributes",
        )
    if blanks:
        col.warn(
            f"{len(blanks)} blank line{'s' * (len(blanks) != 1)} at the end of the file (ignored)",
            display,
            blanks[0],
        )
    if expected_rows is not None and rows != expected_rows:
        col.add(
            f"the manifest says {expected_rows} rows, the file has {rows}",
            display,
            hint="the manifest's row count must match the file: after an intended change, make a new dataset "
            "version and run `verifily dataset hash` on it",
        )


def _flush_blanks(blanks: list[int], display: str, col: Collector) -> None:
    for b in blanks:
        col.add("blank line between rows", display, b, hint="remove empty lines; each line must be one row")
    blanks.clear()


class _NonStandardNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which are not JSON (and break metrics and hashing downstream)."""
    raise _NonStandardNumber(name)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice is refused (Python keeps the last, other parsers the first)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        raise _DuplicateKey(next(k for i, k in enumerate(keys) if k in keys[:i]))
    return out


def _surrogate_path(value: Any) -> tuple[str, str] | None:
    """(JSON path, the surrogate as an escape) of the first string or key holding a lone UTF-16 surrogate (walked
    without recursion: a row may nest as deep as json allows)."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, dict):
            for k, item in reversed(v.items()):
                if m := _SURROGATE.search(k):
                    return path, f"\\u{ord(m.group()):04x}"
                stack.append((f"{path}.{k}", item))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(v))))
        elif isinstance(v, str) and (m := _SURROGATE.search(v)):
            return path, f"\\u{ord(m.group()):04x}"
    return None


def _parse(raw: bytes, display: str, line_no: int, col: Collector) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        col.add(f"invalid UTF-8 byte 0x{raw[e.start]:02x}", display, line_no, e.start + 1, hint="save as UTF-8")
        return None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        col.add(f"invalid JSON: {e.msg}", display, line_no, e.colno)
        return None
    except _NonStandardNumber as e:
        col.add(f"invalid JSON: {e} is not a JSON number", display, line_no, hint="write a number or null")
        return None
    except _DuplicateKey as e:
        col.add(
            f"invalid row: key {str(e)!r} appears twice in one object",
            display,
            line_no,
            hint="give each key once; JSON readers disagree on which of the two wins",
        )
        return None
    except RecursionError:
        col.add("invalid JSON: values nested too deeply", display, line_no, hint="a row nests a few levels at most")
        return None
    if b"\\u" in raw and (found := _surrogate_path(value)):
        col.add(
            f"{found[1]} is a lone UTF-16 surrogate, not a character",
            display,
            line_no,
            hint="escapes \\ud800-\\udfff must come in high-low pairs; fix or drop the row",
            json_path=found[0],
        )
        return None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        col.add(
            f"line is {kind.get(type(value), 'null')}, not a JSON object",
            display,
            line_no,
            hint='each line must be one object, e.g. {"id": "a1", "text": "...", "label": "positive"}',
        )
        return None
    return value


def _canonical(row: dict[str, Any], spec: RowSpec, display: str, line: int, col: Collector) -> dict[str, Any] | None:
    ok = True
    out: dict[str, Any] = {"id": None}

    def bad(msg: str, hint: str | None = None) -> None:
        nonlocal ok
        ok = False
        col.add(msg, display, line, hint=hint)

    id_key = spec.fields.get("id")
    if id_key and id_key in row:
        v = row[id_key]
        if isinstance(v, str) and v.strip():
            out["id"] = v
        elif isinstance(v, int) and not isinstance(v, bool):
            out["id"] = str(v)
        else:
            bad(f"field {id_key!r} (id) must be a non-empty string or an integer, got {_kind(v)}")
    for role in ("text", "prompt", "response", "chosen", "rejected"):
        key = spec.fields.get(role)
        if not key:
            continue
        if key not in row:
            bad(f"missing field {key!r} ({role})")
        elif not isinstance(row[key], str):
            bad(f"field {key!r} ({role}) must be a string, got {_kind(row[key])}")
        else:
            out[role] = row[key]
    key = spec.fields.get("label")
    if key:
        v = row.get(key)
        if key not in row:
            bad(f"missing field {key!r} (label)")
        elif isinstance(v, str) and v != "":
            out["label"] = v
        elif isinstance(v, int) and not isinstance(v, bool):
            out["label"] = str(v)
        else:
            bad(f"field {key!r} (label) must be a non-empty string or an integer, got {_kind(v)}")
    out["tags"] = dict.fromkeys(spec.tag_keys)
    key = spec.fields.get("tags")
    if key and row.get(key) is not None:
        tags = row[key]
        if not isinstance(tags, dict):
            bad(f"field {key!r} (tags) must be an object of strings, got {_kind(tags)}")
        else:
            for k, v in tags.items():
                if k not in spec.tag_keys:
                    bad(
                        f"unknown tag key {k!r}",
                        hint=f"the manifest's tag_keys: {', '.join(spec.tag_keys) or '(none)'}; add it there",
                    )
                elif v is not None and not isinstance(v, str):
                    bad(f"tag {k!r} must be a string, got {_kind(v)}")
                else:
                    out["tags"][k] = v
    return out if ok else None


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "an empty string" if v == "" else "a string"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(v), type(v).__name__)
