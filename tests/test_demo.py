"""The demo as a smoke test: `demo.sh` end to end on the real ds_demo versions and the embedded MiniLM, with a reduced
training length (README's `./demo.sh` is the full one). Checks what each step must leave behind, not its numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .paths import REPO

pytestmark = pytest.mark.integration

VERIFILY = Path(sys.executable).parent / "verifily"


def test_demo_runs_end_to_end(tmp_path):
    if not VERIFILY.exists():
        pytest.skip(f"no console script next to {sys.executable}; install the package (scripts/setup.sh)")
    config = tmp_path / "demo.yaml"
    base = (REPO / "examples" / "train.yaml").read_text(encoding="utf-8")
    # Same config as the demo's, shorter: 6 optimizer steps instead of half an epoch.
    config.write_text(
        base.replace("datasets_root: datasets", f"datasets_root: {REPO / 'examples' / 'datasets'}").replace(
            "epochs: 0.5", "max_steps: 6"
        ),
        encoding="utf-8",
    )
    out = tmp_path / "runs"
    env = dict(os.environ, VERIFILY=str(VERIFILY), DEMO_CONFIG=str(config), DEMO_OUT=str(out), COLUMNS="120")
    proc = subprocess.run(
        ["bash", str(REPO / "demo.sh")], env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout

    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 2, f"expected one run per dataset version, found {[p.name for p in runs]}"
    metas = [json.loads((r / "run_meta.json").read_text()) for r in runs]
    assert sorted(m["dataset"]["version"] for m in metas) == ["v1", "v2"]
    for run in runs:
        (ev,) = (run / "eval").iterdir()
        results = json.loads((ev / "eval_results.json").read_text())
        assert {tuple(sorted(s["key"].items())) for s in results["slices"]} >= {
            (("source", "human"),),
            (("source", "synthetic"),),
        }
        assert (ev / "hard_examples.jsonl").stat().st_size > 0

    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "source=synthetic" in (out / "compare.md").read_text()
    assert "worst examples" in text and "1. " in text
    assert f"{v2_dir(runs, metas)}: intact:" in text
    # The third `train` of v2 is answered by the run cache: no training, the existing v2 run folder printed again.
    everything = text + proc.stderr
    assert f"cached: run {v2_dir(runs, metas)} has the same run key" in everything
    assert everything.count("training classification") == 2
    assert "demo finished in" in text


def v2_dir(runs: list[Path], metas: list[dict]) -> Path:
    return next(r for r, m in zip(runs, metas, strict=True) if m["dataset"]["version"] == "v2")
