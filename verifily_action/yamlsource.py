"""Load YAML or JSON files safely and remember where every value came from: the one reader of every YAML file the
tool reads (`load`, or `load_yaml` for the plain value; a test keeps other modules to writing YAML).

Configs and manifests are user-written; every error we report must name the file, line and column. PyYAML's
composer keeps `start_mark` on each node, so we build plain Python values from the node tree ourselves and record,
for each JSON path, the (line, column) of its key and its value.

Safety: only regular files are read (`open_regular`: a FIFO would block forever and `/dev/zero` never ends);
files over `MAX_BYTES` are refused before parsing; anchors and aliases are refused (they are how an
"billion laughs" file explodes, and no config needs them); nesting deeper than `MAX_DEPTH` is refused while the
events stream in (PyYAML's scanner is quadratic in the nesting depth, and building values recurses, so a small
file of `[[[[...` would otherwise hang or overflow the stack); only the safe YAML types are built, and numbers
must be finite (`.nan` and `.inf` pass a `minimum` check but no config means them). Parsing uses libyaml when
PyYAML has it (a 1 MiB file of 75k keys parses in a fraction of a second instead of ten).

Numbers in a train config are read the YAML 1.2 way (`load(..., yaml12_floats=True)`): `1e-4`, `1E5`, `.5` and
`-.5` are floats (YAML 1.1, PyYAML's default, reads the first three as strings, and people write learning rates as
`1e-4` everywhere). Files the tool writes itself (a run's config.yaml) are read as they were written, YAML 1.1:
PyYAML's writer leaves a string like `1e5` unquoted, which a YAML 1.2 reader would turn into a number.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from .errors import Problem, VerifilyError

MAX_BYTES = 1024 * 1024  # a config or manifest is a few KB; 1 MiB leaves ample room
MAX_DEPTH = 64  # a config nests 3 levels, a manifest 6

JsonPath = tuple[str | int, ...]

_FLOAT = "tag:yaml.org,2002:float"
# YAML 1.2 core schema floats (exponent sign and digits before the dot optional), plus YAML 1.1's base-60 form
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class _Loader12(_Loader):  # type: ignore[misc,valid-type]
    """The safe loader with YAML 1.2 floats (every other implicit type as PyYAML's safe loader has it)."""


_Loader12.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _FLOAT] for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader12.add_implicit_resolver(_FLOAT, _FLOAT_12, list("-+0123456789."))


@dataclass
class Source:
    """A loaded document: the plain value plus where each JSON path sits in the file."""

    path: str
    data: Any
    # JSON path -> (line, column), both 1-based; the key's position for mapping entries
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, json_path: JsonPath) -> tuple[int | None, int | None]:
        """Position of the deepest known ancestor of `json_path` (the path itself when known)."""
        p = tuple(json_path)
        while True:
            if p in self.positions:
                return self.positions[p]
            if not p:
                return (None, None)
            p = p[:-1]


def format_json_path(path: JsonPath) -> str:
    """`('lora', 'r')` -> `$.lora.r`; list indices as `[0]`."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _fail(file: str, message: str, hint: str | None = None, line: int | None = None, column: int | None = None):
    return VerifilyError(
        f"cannot read {file}",
        problems=[Problem(message, file=file, line=line, column=column, hint=hint)],
    )


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_regular(path: str | Path, mode: int, kind: str = "file") -> VerifilyError:
    """The error for a path that is a pipe, device or socket: reading one blocks forever or never ends."""
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return VerifilyError(
        f"{kind} {path} is {what}, not a regular file",
        hint=f"verifily reads only regular files (no pipes, devices or sockets): put the {kind} itself there",
    )


def regular_only(path: str | Path, flags: int) -> int:
    """An `opener` for `open()` that refuses anything but a regular file (`open(p, opener=regular_only)`), checked on
    the open descriptor like `open_regular`; a missing file still raises FileNotFoundError."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(path, mode)
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return fd


def open_regular(path: str | Path, kind: str = "file") -> BinaryIO:
    """Open `path` for binary reading, refusing anything but a regular file with one clear error. The check is on
    the open descriptor (O_NONBLOCK: opening a FIFO without a writer returns at once), so the file cannot be
    swapped for a pipe between the check and the read."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise VerifilyError(
            f"{kind} not found: {name}", hint="check the path (relative paths are from the current folder)"
        ) from None
    except IsADirectoryError:  # Windows; on POSIX a directory opens and fstat says so below
        fd = -1
    except OSError as e:  # a socket (ENXIO), no permission, ...
        raise VerifilyError(
            f"cannot open {kind} {name}: {e.strerror}", hint="check the path and its permissions"
        ) from None
    mode = os.fstat(fd).st_mode if fd >= 0 else stat.S_IFDIR
    if stat.S_ISREG(mode):
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    if fd >= 0:
        os.close(fd)
    if stat.S_ISDIR(mode):
        raise VerifilyError(
            f"{kind} {name} is a directory, not a file", hint=f"pass the path of the {kind} file itself"
        )
    raise not_regular(name, mode, kind)


def read_text(path: str | Path, kind: str = "file") -> str:
    """Read a small UTF-8 text file (a regular file of at most MAX_BYTES) with one clear error per way it can go
    wrong."""
    name = str(path)
    with open_regular(path, kind) as f:
        raw = f.read(MAX_BYTES + 1)
        size = os.fstat(f.fileno()).st_size
    if len(raw) > MAX_BYTES:
        raise _fail(
            name,
            f"file is {max(size, len(raw)):,} bytes; a {kind} may be at most {MAX_BYTES:,} bytes",
            hint="is this the right file? data belongs in JSONL files referenced by a dataset manifest",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise _fail(name, f"invalid UTF-8 byte 0x{raw[e.start]:02x}", "save the file as UTF-8", line, col) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM is harmless in YAML/JSON; editors on Windows add it
    return text


def load(path: str | Path, kind: str = "file", *, yaml12_floats: bool = False) -> Source:
    """Parse a YAML (or JSON, which is YAML) file into a `Source`; `yaml12_floats` for files people write (see the
    module docstring)."""
    name = str(path)
    loader = _Loader12 if yaml12_floats else _Loader
    text = read_text(path, kind)
    if not text.strip():
        raise _fail(name, f"the {kind} is empty", hint=f"see examples/ for a complete {kind}")
    try:
        _check_events(text, name)
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = f"YAML syntax error: {e.problem or e.context}"
        if e.context and e.problem:
            msg += f" ({e.context})"
        hint = "check indentation and quoting near this line"
        if "maximum nesting depth" in str(e.problem):  # libyaml's own limit, met while it scans ahead
            msg, hint = f"values are nested more than {MAX_DEPTH} levels deep", _DEEP_HINT
        raise _fail(name, msg, hint, *_pos(mark)) from None
    except yaml.YAMLError as e:
        raise _fail(name, f"YAML error: {e}") from None
    if node is None:
        raise _fail(name, f"the {kind} holds no value", hint=f"see examples/ for a complete {kind}")
    src = Source(path=name, data=None)
    src.data = _build(node, (), src, loader(""))
    return src


def load_yaml(path: str | Path, kind: str = "file") -> Any:
    """The plain value of a YAML (or JSON) file read with every limit of `load`: what the tool uses wherever it
    reads YAML without needing positions (a run's config.yaml, a config's GPU settings). Errors name file:line."""
    return load(path, kind).data


def _pos(mark: Any) -> tuple[int | None, int | None]:
    """A PyYAML mark as 1-based (line, column)."""
    return (mark.line + 1, mark.column + 1) if mark else (None, None)


_DEEP_HINT = "a config or manifest nests a few levels; is this the right file?"


def _check_events(text: str, name: str) -> None:
    """Refuse anchors, aliases and deep nesting from the event stream, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        where = _pos(event.start_mark)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _fail(
                name,
                "YAML anchors and aliases (&name / *name) are not supported",
                "write the values out in full",
                *where,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _fail(name, f"values are nested more than {MAX_DEPTH} levels deep", _DEEP_HINT, *where)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _build(node: yaml.Node, path: JsonPath, src: Source, loader: Any) -> Any:
    src.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        raise _fail(
            src.path,
            f"unsupported YAML value: tag {node.tag}",
            "remove the !! tag",
            *_pos(node.start_mark),
        )
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, src, loader)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(src.path, "YAML merge keys (<<) are not supported", None, key_node.start_mark.line + 1)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise _fail(src.path, "mapping keys must be plain scalars", None, key_node.start_mark.line + 1)
            if key in out:
                raise _fail(
                    src.path,
                    f"duplicate key {key!r}",
                    "remove one of the two entries",
                    *_pos(key_node.start_mark),
                )
            child = (*path, key if isinstance(key, str | int) else str(key))
            src.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _build(value_node, child, src, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), src, loader) for i, item in enumerate(node.value)]
    return _scalar(node, src, loader)


def _scalar(node: yaml.Node, src: Source, loader: Any) -> Any:
    """One scalar's value, built by `loader` (one per file: making a loader per scalar cost more than parsing)."""
    if not isinstance(node, yaml.ScalarNode):
        raise _fail(src.path, "mapping keys must be plain scalars", None, node.start_mark.line + 1)
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        raise _fail(src.path, f"unsupported YAML value: {e.problem}", None, node.start_mark.line + 1) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(
            src.path,
            f"{node.value!r} is not a finite number",
            "write a plain number (NaN and infinity are not allowed)",
            *_pos(node.start_mark),
        )
    return value
