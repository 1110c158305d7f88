"""The one escaper: text that comes from data (tag values, run, dataset and artifact names, sentences quoting them)
is made inert before it reaches any markdown — the PR comment, the job summary and `verifily compare --format
markdown` alike — so a tag value like `@org/team`, `<details>` or `[x](http://…)` cannot ping anyone, inject HTML,
link anywhere or break a table.

Three shapes: `inert` for text that is all data, `code_span` for data shown inside a code span (GitHub shows it
literally), and `prose` for our own sentences that quote data, whose `code spans` stay code spans.
"""

from __future__ import annotations

import re
from typing import Any

_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINK = re.compile(r"\]\(")  # `[text](url)`: a link or an image when preceded by `!`
_REFERENCE = re.compile(r"(#|\bGH-)(?=\d)", re.I)  # `#12`, `GH-12`: GitHub links them to issues
_EMPHASIS = re.compile(r"[*~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # `macro_f1` stays; `_x_`, `*x*`, `~~x~~` do not
_AUTOLINK = re.compile(r"\b(https?:)(?=//)|\b(www)(?=\.)", re.I)  # bare URLs GitHub would turn into links
# at the start of a bullet's text: a heading, or a link reference definition (`[x]: //evil.example`, invisible, which
# would make `[x]` anywhere else a link)
_BLOCK_START = re.compile(r"^(\s*)([#\[])")
# bidirectional controls reorder what a reader sees (a name that reads as another): removed
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile(r"[\r\n\u2028\u2029]")


def inert(text: object, *, table_cell: bool = False, max_len: int | None = 200) -> str:
    """Text from data, made inert for markdown: no @mentions (a zero-width joiner breaks the link), no HTML, no
    `#123` / `GH-123` references, no inline links, images or bare URLs, no emphasis, no code spans, no bidirectional
    controls, no line breaks (which could start a heading, a quote or a code block), no heading or link reference
    definition at its start; in table cells also no `|`. Longer than `max_len` characters: shortened with `…`."""
    s = str(text)
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    s = _BIDI.sub("", s).replace("\\", "\\\\")  # first: the escapes added below must stay escapes
    s = _BREAKS.sub(" ", s)
    s = "".join(_HTML.get(c, c) for c in s)
    s = _MENTION.sub("@\u200d", s)
    s = _REFERENCE.sub("\\1\u200d", s)
    s = _LINK.sub("]\u200d(", s)
    s = _AUTOLINK.sub(lambda m: (m[1] or m[2]) + "\u200d", s)
    s = _EMPHASIS.sub(lambda m: "\\" + m[0], s)
    s = s.replace("`", "\u02cb")  # a stray backtick would open a code span that swallows the rest of the table
    s = _BLOCK_START.sub(r"\1\\\2", s)
    if table_cell:
        s = s.replace("|", "\\|")
    return s


def code_span(text: object) -> str:
    """Text shown inside a markdown code span (`…`): GitHub renders it literally, so only a backtick (which would end
    the span), a line break and bidirectional controls (which still reorder what is shown) need replacing."""
    return _BIDI.sub("", str(text)).replace("`", "\u02cb").replace("\r", " ").replace("\n", " ")


def prose(text: object, *, max_len: int | None = 500) -> str:
    """One of our sentences that quotes data (`No baseline: the artifact `x` of run 12 …`): its `code spans` stay
    code spans, shown literally, and the text between them is made inert. A backtick from data can only move where a
    span starts or ends, and both sides of that are safe; an unpaired one is shown as `ˋ`."""
    s = str(text)
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    parts = s.split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(inert(part, max_len=None))
        elif i == len(parts) - 1:  # after an unpaired backtick
            out.append("\u02cb" + inert(part, max_len=None))
        elif part:  # an empty pair would be a two-backtick delimiter: left out
            out.append(f"`{code_span(part)}`")
    return "".join(out)


def mermaid_label(text: str, max_len: int = 40) -> str:
    """A Mermaid string literal: no quotes, backticks or line breaks can end it early, no HTML tags, no bidirectional
    controls."""
    s = _BIDI.sub("", text).replace("<", "\u2039").replace(">", "\u203a")
    return re.sub(r'["`\\\n\r]', "'", s)[:max_len]


# ---------------------------------------------------------------- HTML (the dashboard and `verifily report --html`)

_JSON_IN_SCRIPT = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def html(text: object) -> Any:
    """Text from data for an HTML page: `& < > " '` escaped (inert in element text and in quoted attributes alike),
    bidirectional controls removed. A `markupsafe.Markup` (a template's own fragment) passes unchanged. The Jinja
    environment of the dashboard calls this on every `{{ … }}` (dashboard/render.py), so no value reaches a page
    unescaped."""
    from markupsafe import Markup, escape

    if isinstance(text, Markup):
        return text
    return escape(_BIDI.sub("", "" if text is None else str(text)))


def json_script(data: object) -> Any:
    """`data` as JSON for a `<script type="application/json">` block: `<`, `>`, `&`, the JS line separators and
    bidirectional controls written as \\u escapes, so no value can end the block (`</script>`), open a comment or
    reorder the page's source; JSON.parse gives the values back unchanged."""
    import json

    from markupsafe import Markup

    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Markup(_BIDI.sub(lambda m: f"\\u{ord(m[0]):04x}", "".join(_JSON_IN_SCRIPT.get(c, c) for c in text)))
