"""GitHub Actions workflow commands (`::add-mask::`, `::error file=…::`, `::group::`) and the files the runner
reads after a step (`GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`).

Escaping follows @actions/core (`command.ts`): in a command's message `%`, CR and LF are percent-encoded; in a
property value `:` and `,` are too. Without it a newline in an error message would end the command and the rest
would be printed as plain log text, and a `::` in a file name would cut the annotation short.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

MAX_SUMMARY_BYTES = 1024 * 1024  # the runner refuses step summaries over 1 MiB


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def format_command(name: str, message: str = "", **properties: object) -> str:
    """`::name key=value,key=value::message`; properties whose value is None are left out."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def _emit(line: str, out: TextIO | None) -> None:
    stream = out or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def add_mask(secret: str, out: TextIO | None = None) -> None:
    """Ask the runner to mask a secret in all later log lines. Each line of a multi-line secret is masked on its
    own (the runner matches masks per line)."""
    for part in secret.splitlines() or [secret]:
        if part.strip():
            _emit(format_command("add-mask", part), out)


def annotation(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    end_line: int | None = None,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """An `error`, `warning` or `notice` annotation, shown on the file's line in the PR's diff view."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"unknown annotation level {level!r}")
    _emit(
        format_command(level, message, title=title, file=file, line=line, endLine=end_line, col=col),
        out,
    )


def error(message: str, **kw) -> None:
    annotation("error", message, **kw)


def warning(message: str, **kw) -> None:
    annotation("warning", message, **kw)


def notice(message: str, **kw) -> None:
    annotation("notice", message, **kw)


@contextmanager
def group(title: str, out: TextIO | None = None) -> Iterator[None]:
    """A collapsible log section; always closed, even when the body raises."""
    _emit(format_command("group", title), out)
    try:
        yield
    finally:
        _emit("::endgroup::", out)


def format_output(name: str, value: str) -> str:
    """One `GITHUB_OUTPUT` entry in the heredoc form, safe for any value (multi-line, `=`, quotes).

    The delimiter is random so a value cannot end the entry early; a clash is checked anyway, as @actions/core does.
    """
    if not name or "\n" in name or "<<" in name:
        raise ValueError(f"invalid output name {name!r}")
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    if delimiter in value:  # practically impossible, but a silent corruption would be worse than an error
        raise ValueError("output value contains the delimiter")
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def set_output(name: str, value: str, path: str | Path | None = None) -> None:
    """Append an output for later steps (`steps.<id>.outputs.<name>`). Without GITHUB_OUTPUT (a local run) the
    value is printed instead, so nothing is lost silently."""
    target = path or os.environ.get("GITHUB_OUTPUT")
    if not target:
        _emit(f"output {name}={value}", None)
        return
    with open(target, "a", encoding="utf-8") as f:
        f.write(format_output(name, value))


def set_outputs(values: dict[str, str]) -> None:
    for name, value in values.items():
        set_output(name, value)


def append_summary(markdown: str, path: str | Path | None = None, max_bytes: int = MAX_SUMMARY_BYTES) -> bool:
    """Append markdown to the job summary; returns False (and writes nothing) when there is no summary file.

    The runner drops a summary over 1 MiB entirely, so an oversized report is cut with a visible note instead.
    """
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    p = Path(target)
    used = p.stat().st_size if p.exists() else 0
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    room = max_bytes - used
    data = text.encode("utf-8")
    if len(data) > room:
        note = b"\n\n> **Note:** the report was cut here: the job summary is limited to 1 MiB.\n"
        keep = max(0, room - len(note))
        data = data[:keep].decode("utf-8", errors="ignore").encode("utf-8") + note if keep else b""
    if data:
        with open(p, "ab") as f:
            f.write(data)
    return True
