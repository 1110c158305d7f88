"""The Jinja2 environment of the dashboard and of `verifily report --html`, and the two ways a page carries its CSS
and chart script: linked from the server's /ui/static/ (`page`), or inlined into one self-contained file
(`standalone`). Every `{{ … }}` goes through report.escape.html (the environment's `finalize`), so no value from a
run, a dataset or a URL reaches a page unescaped; chart data goes in as `<script type="application/json">` through
report.escape.json_script.

Content-Security-Policy: the server sends `CSP` (scripts and styles from the server itself only); a standalone file
carries the same rule in a meta tag with the sha256 of each inlined block instead of 'self' — neither lets a page
load a script from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from ..report.escape import html, json_script
from ..report.summary import fmt_change, fmt_value, metric_name

STATIC = ("style.css", "chart.umd.min.js", "dashboard.js")  # what /ui/static/ serves, and what `standalone` inlines
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def static_text(name: str) -> str:
    if name not in STATIC:
        raise KeyError(name)
    return _static(name)


@cache
def _static(name: str) -> str:
    return (resources.files(__package__) / "static" / name).read_text(encoding="utf-8")


def _interval(metric: str, v: Any) -> str:
    if not v or v.get("value") is None:
        return "–"
    text = fmt_value(metric, v["value"])
    if v.get("ci_low") is not None:
        text += f" [{fmt_value(metric, v['ci_low'])}, {fmt_value(metric, v['ci_high'])}]"
    return text


@lru_cache(maxsize=1)
def environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader(__package__, "templates"),
        autoescape=True,
        finalize=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        json_script=json_script,
        interval=lambda v, metric: _interval(metric, v),
        metric_name=metric_name,
        change=lambda x, metric: fmt_change(metric, x, False),
        num=lambda x: "–" if x is None else f"{x:+.3g}",
    )
    return env


def page(template: str, **context: Any) -> str:
    """A page for the server: CSS and scripts linked from /ui/static/."""
    from markupsafe import Markup

    link = '<link rel="stylesheet" href="/ui/static/{}">'
    script = '<script src="/ui/static/{}" defer></script>'
    head = "".join((link if n.endswith(".css") else script).format(n) for n in STATIC)
    return environment().get_template(template).render(head=Markup(head), **context)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def standalone(template: str, **context: Any) -> str:
    """One self-contained HTML file: the CSS and every script inlined, allowed by their hashes in a CSP meta tag."""
    from markupsafe import Markup

    blocks = {n: _static(n) for n in STATIC}
    for name, text in blocks.items():  # an inlined block must not be able to end its own element
        end = "</style" if name.endswith(".css") else "</script"
        if end in text.lower():
            raise RuntimeError(f"the vendored {name} contains {end}: it cannot be inlined")
    css = [n for n in STATIC if n.endswith(".css")]
    js = [n for n in STATIC if n.endswith(".js")]
    policy = (
        "default-src 'none'; img-src data:; "
        f"script-src {' '.join(_sha(blocks[n]) for n in js)}; style-src {' '.join(_sha(blocks[n]) for n in css)}; "
        "base-uri 'none'; form-action 'none'"
    )
    head = f'<meta http-equiv="Content-Security-Policy" content="{html(policy)}">'
    head += "".join(f"<style>{blocks[n]}</style>" for n in css)
    # scripts after the page's content (the data blocks exist when they run): `tail`
    tail = "".join(f"<script>{blocks[n]}</script>" for n in js)
    return environment().get_template(template).render(head=Markup(head), tail=Markup(tail), static=True, **context)
