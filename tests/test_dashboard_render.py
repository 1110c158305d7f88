"""The dashboard's templates without a browser: every value from a run goes through the one escaper
(report.escape.html, the Jinja environment's finalize) and chart data through report.escape.json_script, so hostile
names, tags and inputs stay text; a standalone report allows exactly its own inlined blocks by hash; `verifily
report` refuses a folder that is not a run with one clear error and writes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from verifily_action.dashboard import render
from verifily_action.report.escape import html, json_script

pytestmark = pytest.mark.unit

HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>\"'\u202e"


def _run(name: str = HOSTILE) -> dict:
    values = {"accuracy": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}}
    return {
        "name": name,
        "id": name,
        "status": "completed",
        "task": "classification",
        "root_hash": "a" * 64,
        "dataset": name,
        "model": name,
        "evaluations": [
            {
                "name": name,
                "metrics": ["accuracy"],
                "directions": {"accuracy": "higher"},
                "confidence": 0.95,
                "rows": [{"slice": f"source={name}", "n": 3, "too_small": True, "values": values}],
                "hard": [{"rank": 1, "id": name, "tags": {name: name}, "reference": name, "prediction": name,
                          "loss": 1.0, "input": name}],
            }
        ],
        "loss": [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.5}],
        "attributions": [{"method": name, "confidence": 0.95, "segments": [
            {"key": name, "value": name, "rows": 2, "sum": 0.1, "ci_low": -0.1, "ci_high": 0.2, "verdict": "unclear"}
        ]}],
    }  # fmt: skip


def _cmp() -> dict:
    return {
        "baseline": HOSTILE,
        "runs": [HOSTILE, "b"],
        "summary": [HOSTILE],
        "header": ["slice", HOSTILE],
        "cells": [[HOSTILE, "1"]],
        "footnotes": [HOSTILE],
        "dataset_diffs": [HOSTILE],
        "gates": [{"failed": True, "checked": True, "rule": HOSTILE, "message": HOSTILE}],
        "which_data": None,
        "chart": {
            "slices": [HOSTILE],
            "confidence": 0.95,
            "metrics": [{"metric": "accuracy", "label": HOSTILE, "direction": "higher", "series": [
                {"run": HOSTILE, "deltas": [0.1], "lows": [0.0], "highs": [0.2], "significant": [False]}
            ]}],
        },
    }  # fmt: skip


def _script_blocks(text: str) -> list[str]:
    return re.findall(r"<script[^>]*>(.*?)</script>", text, re.S)


def test_hostile_values_stay_text_in_a_standalone_report():
    text = render.standalone("report.html", title=HOSTILE, cmp=_cmp(), runs=[_run()])
    assert "<script>alert" not in text and "<img src=x" not in text and "\u202e" not in text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in text and "&#34;&#39;" in text
    blocks = _script_blocks(text)
    data = [b for b in blocks if b.startswith(("{", "["))]
    code = [b for b in blocks if b not in data]
    assert len(code) == len([n for n in render.STATIC if n.endswith(".js")])  # only the vendored and our own script
    chart = next(json.loads(b) for b in data if b.startswith("{"))
    assert chart["slices"] == [HOSTILE]  # the data survives, as data
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)[1].replace("&#39;", "'")
    for block in code:
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "'self'" not in policy and "http" not in policy and "unsafe" not in policy


def test_server_pages_link_their_scripts_from_the_server_only():
    text = render.page("run.html", run=_run("plain"), root="a" * 64, org="acme", csrf="c")
    srcs = re.findall(r'<script[^>]+src="([^"]+)"', text)
    assert srcs and all(s.startswith("/ui/static/") for s in srcs)
    assert "script-src 'self'" in render.CSP and "default-src 'none'" in render.CSP


def test_the_escaper_and_json_blocks():
    assert str(html('<a href="x">\u202e&')) == "&lt;a href=&#34;x&#34;&gt;&amp;"
    assert str(html(None)) == ""
    block = str(json_script({"k": "</script><!--\u2028"}))
    assert "<" not in block and ">" not in block and json.loads(block) == {"k": "</script><!--\u2028"}


def test_vendored_chartjs_is_recorded():
    from importlib import resources

    static = resources.files("verifily_action.dashboard") / "static"
    name, version, digest = (static / "CHARTJS_VERSION").read_text().split()
    body = (static / "chart.umd.min.js").read_bytes()
    assert name == "chart.js" and body.startswith(b"/*!\n * Chart.js v" + version.encode())
    assert hashlib.sha256(body).hexdigest() == digest and (static / "chart.js.LICENSE.md").is_file()


def test_report_of_a_folder_that_is_not_a_run_is_one_clear_error(cli, tmp_path):
    out = tmp_path / "out" / "report.html"
    got = cli("report", "--run", str(tmp_path), "--html", str(out))
    assert got.returncode == 2 and "is not a run folder" in got.stderr and "Traceback" not in got.stderr
    assert not out.exists()
