"""Workflow commands, outputs and the job summary, formatted as the runner parses them."""

from __future__ import annotations

import io
import re

import pytest

from verifily_action.github import workflow as wf

pytestmark = pytest.mark.unit


def test_annotation_escapes_message_and_properties():
    out = io.StringIO()
    wf.error("bad value\nsecond line 100%", file="configs/a:b,c.yaml", line=7, col=3, out=out)
    assert out.getvalue() == "::error file=configs/a%3Ab%2Cc.yaml,line=7,col=3::bad value%0Asecond line 100%25\n"


def test_annotation_without_properties_and_levels():
    out = io.StringIO()
    wf.warning("careful", out=out)
    wf.notice("fyi", title="Verifily", out=out)
    assert out.getvalue() == "::warning::careful\n::notice title=Verifily::fyi\n"
    with pytest.raises(ValueError):
        wf.annotation("debug", "x")


def test_group_closes_even_on_error():
    out = io.StringIO()
    with pytest.raises(RuntimeError), wf.group("Train", out=out):
        out.write("inside\n")
        raise RuntimeError
    assert out.getvalue() == "::group::Train\ninside\n::endgroup::\n"


def test_add_mask_masks_each_line():
    out = io.StringIO()
    wf.add_mask("abc\ndef", out=out)
    assert out.getvalue() == "::add-mask::abc\n::add-mask::def\n"


def test_outputs_use_a_random_heredoc_delimiter(tmp_path):
    path = tmp_path / "output"
    value = "line 1\nEOF\nname=value"
    wf.set_output("metrics-json", value, path)
    wf.set_output("run-key", "k1", path)
    text = path.read_text()
    entries = re.findall(r"^(\S+)<<(ghadelimiter_[0-9a-f]{32})\n(.*?)\n\2\n", text, re.S | re.M)
    assert [(n, v) for n, _, v in entries] == [("metrics-json", value), ("run-key", "k1")]
    assert entries[0][1] != entries[1][1]
    with pytest.raises(ValueError):
        wf.set_output("bad\nname", "x", path)


def test_summary_appends_and_is_capped(tmp_path, monkeypatch):
    path = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    assert wf.append_summary("# One")
    assert wf.append_summary("two\n")
    assert path.read_text() == "# One\ntwo\n"
    wf.append_summary("é" * 2000, max_bytes=1000)
    assert path.stat().st_size <= 1000 and "cut here" in path.read_text(encoding="utf-8")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert wf.append_summary("x") is False
