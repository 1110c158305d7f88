"""The one escaper: text that comes from data (tag values, run, dataset and artifact names, sentences quoting them)
is made inert before it reaches any markdown — the PR comment, the job summary and `verifily compare --format
markdown` alike — so a tag value like `@org/team`, `<details>` or `[x](http://…)` cannot ping anyone, inject HTML,
link anywhere or break a table.
"""

from __future__ import annotations

import re

_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINK = re.compile(r"\]\(")  # `[text](url)`: a link or an image when preceded by `!`
_REFERENCE = re.compile(r"(#|\bGH-)(?=\d)", re.I)  # `#12`, `GH-12`: GitHub links them to issues
_EMPHASIS = re.compile(r"[*~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # `macro_f1` stays; `_x_`, `*x*`, `~~x~~` do not
# bidirectional controls reorder what a reader sees (a name that reads as another): removed
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: object, *, table_cell: bool = False, max_len: int | None = 200) -> str:
    """Text from data, made inert for markdown: no @mentions (a zero-width joiner breaks the link), no HTML, no
    `#123` / `GH-123` references, no inline links or images, no emphasis, no code spans, no bidirectional controls;
    in table cells also no `|` or line breaks. Longer than `max_len` characters: shortened with `…`."""
    s = str(text)
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    s = _BIDI.sub("", s).replace("\\", "\\\\")  # first: the escapes added below must stay escapes
    s = "".join(_HTML.get(c, c) for c in s)
    s = _MENTION.sub("@\u200d", s)
    s = _REFERENCE.sub("\\1\u200d", s)
    s = _LINK.sub("]\u200d(", s)
    s = _EMPHASIS.sub(lambda m: "\\" + m[0], s)
    s = s.replace("`", "\u02cb")  # a stray backtick would open a code span that swallows the rest of the table
    if table_cell:
        s = s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return s


def code_span(text: object) -> str:
    """Text shown inside a markdown code span (`…`): GitHub renders it literally, so only a backtick (which would end
    the span) and a line break need replacing."""
    return str(text).replace("`", "\u02cb").replace("\r", " ").replace("\n", " ")


def mermaid_label(text: str, max_len: int = 40) -> str:
    """A Mermaid string literal: no quotes, backticks or line breaks can end it early."""
    return re.sub(r'["`\\\n\r]', "'", text)[:max_len]
