"""The one escaper (report.escape) and the markdown that goes through it: text from data is inert in every markdown
output — the PR comment, the job summary and `verifily compare --format markdown`."""

from __future__ import annotations

import re

import pytest

from verifily_action.report import comparison as render
from verifily_action.report.escape import code_span, inert, mermaid_label, prose

pytestmark = pytest.mark.unit

EVIL = "@org/team <details><summary>x</summary> [x](http://evil.example) ![i](http://evil.example/i.png) | `c` #12"


def test_inert_defuses_mentions_html_links_and_tables():
    evil = "@octocat <img src=x onerror=alert(1)> | col\nnext `code` #12"
    cell = inert(evil, table_cell=True)
    assert "@octocat" not in cell and "<img" not in cell and "\n" not in cell
    assert "\\|" in cell and "|" not in cell.replace("\\|", "")
    assert "#12" not in cell and "`" not in cell
    assert len(inert("x" * 1000)) == 200 and inert("x" * 1000).endswith("…")
    assert len(inert("x" * 1000, max_len=None)) == 1000
    link = inert("[x](http://evil.example)")
    assert "](" not in link and "http:\u200d//evil.example" in link  # the text stays readable, the link is gone
    assert inert("plain words, 0.91 [0.88, 0.93]") == "plain words, 0.91 [0.88, 0.93]"  # our own text unchanged


def test_inert_defuses_emphasis_references_and_bidi_controls():
    s = inert("*bold* _it_ ~~gone~~ GH-12 gh-7 \u202eevil\u2066 macro_f1 a\\b")
    assert "*bold*" not in s and "\\*bold\\*" in s and "\\_it\\_" in s and "\\~\\~gone" in s
    assert "GH-12" not in s and "gh-7" not in s  # GitHub links GH-<n> to an issue
    assert "\u202e" not in s and "\u2066" not in s and "evil" in s
    assert "macro_f1" in s  # an underscore inside a word is no emphasis: left as it is
    assert "a\\\\b" in s  # a backslash from data is shown, not used as an escape


def test_inert_defuses_bare_urls_line_breaks_and_block_starts():
    s = inert("see http://evil.example and https://x.example/a or www.evil.example")
    assert not re.search(r"https?://|www\.", s) and "evil.example" in s  # GitHub autolinks these: not any more
    bullet = inert("fine\n\n# Heading\n> quote\n```\ncode\r\n[x]: //evil.example")
    assert "\n" not in bullet and "\r" not in bullet and "```" not in bullet
    assert inert("[x]: //evil.example").startswith("\\[x]")  # no link reference definition from data
    assert inert("# big").startswith("\\# big") and inert("  [x]").startswith("  \\[x]")
    assert inert("1 [0.88, 0.93]") == "1 [0.88, 0.93]"  # brackets inside a line stay as they are


def test_code_span_only_guards_its_own_delimiter():
    assert code_span("macro_f1@source=human<-2pts") == "macro_f1@source=human<-2pts"  # literal inside a code span
    assert "`" not in code_span("a`b") and "\n" not in code_span("a\nb")
    assert code_span("\u202eevil\u2066") == "evil"  # a code span still shows bidi controls' reordering
    assert '"' not in mermaid_label('say "hi"') and len(mermaid_label("x" * 100)) == 40
    assert mermaid_label("<img src=x>\u202e") == "\u2039img src=x\u203a"


def test_prose_keeps_our_code_spans_and_defuses_the_rest():
    reason = "the artifact `my_run_*` of run 12 could not be fetched: member '@org/team [x](http://e.example)'"
    s = prose(reason)
    assert s.startswith("the artifact `my_run_*` of run 12")  # our code span, shown literally as written
    assert "@org" not in s and "](" not in s and "http://" not in s
    # a backtick from data moves span boundaries only: whatever lands outside a span is still inert
    s = prose("workflow `a` said: x` @org/team <b> `y` *z* `unpaired @octocat")
    outside = re.sub(r"`[^`]*`", "", s)
    assert "@org" not in outside and "<b>" not in outside and "@octocat" not in outside and "*z*" not in outside
    assert s.count("`") % 2 == 0
    assert prose("a `` b") == "a  b"  # an empty pair would open a two-backtick span
    assert "\u202e" not in prose("`\u202eevil` \u202e")


def _comparison(tag_value: str) -> dict:
    row = {
        "slice": {"source": tag_value},
        "metric": "accuracy",
        "direction": "higher",
        "values": [
            {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n": 40, "too_small": False},
            {"value": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 40, "too_small": False},
        ],
        "deltas": [
            {
                "status": "compared",
                "delta": 0.1,
                "ci_low": 0.01,
                "ci_high": 0.2,
                "p_value": 0.01,
                "significant": True,
                "improved": True,
                "method": "paired",
            }
        ],
    }
    return {
        "baseline": f"base {tag_value}",
        "runs": [{"name": f"base {tag_value}"}, {"name": "cand"}],
        "confidence": 0.95,
        "metrics": ["accuracy"],
        "rows": [row],
        "summary": [f"accuracy on source={tag_value} improved"],
        "notes": [f"note about {tag_value}"],
        "dataset_diffs": [{"text": f"added rows tagged {tag_value}"}],
        "gates": [
            {"rule": "accuracy@source=x<-2pts", "failed": False, "checked": True, "message": f"{tag_value} held"}
        ],
    }


def _assert_inert(md: str) -> None:
    # inside a code span GitHub shows text literally; everywhere else nothing may stay live
    outside_code = re.sub(r"`[^`\n]*`", "", md)
    assert "@org" not in outside_code, md
    assert "<details>" not in outside_code and "<summary>" not in outside_code, md
    assert "](http://evil" not in outside_code, md
    assert "#12" not in outside_code, md
    widths = {len(re.findall(r"(?<!\\)\|", ln)) for ln in md.splitlines() if ln.startswith("| ")}
    assert len(widths) == 1, md  # the pipe in the tag value did not add a column


def test_comparison_markdown_is_inert():
    md = render.markdown(_comparison(EVIL))
    _assert_inert(md)
    assert "`accuracy@source=x<-2pts`" in md  # a gate rule in its code span is shown as written


def test_compare_cli_markdown_is_inert(tmp_path):
    """`verifily compare --format markdown` through the real command, on two runs whose tag value is hostile."""
    from typer.testing import CliRunner

    from tests.compare_fakes import make_run, records
    from verifily_action.cli import app

    sizes = {"human": 60, EVIL: 60}
    base = make_run(tmp_path, "base", records(sizes, {"human": 0.8, EVIL: 0.5}, seed=1))
    cand = make_run(tmp_path, "cand", records(sizes, {"human": 0.8, EVIL: 0.9}, seed=2))
    res = CliRunner().invoke(app, ["compare", "--runs", f"{base},{cand}", "--format", "markdown"])
    assert res.exit_code == 0, res.output
    assert "source=" in res.output
    _assert_inert(res.output)
