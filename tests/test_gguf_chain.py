"""A run on a model converted from a GGUF (train/gguf.py) records the GGUF's sha256 (`model:gguf`) in its chain and
key; `reproduce --verify-only` checks it against the converted folder's gguf.json (a file the chain cannot name:
the entry is a hash, not a file). The conversion itself is stood in for by a tiny llama folder with a gguf.json; a
real one is converted in tests/real_llm."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.builders import GENERATED, sft_rows, tiny_sft_config, write_dataset
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration


def test_the_gguf_hash_is_in_the_chain_and_verified(cli, tmp_path, monkeypatch):
    from verifily_action.train import job, plan
    from verifily_action.train.plan import TrainOptions

    folder = make_tiny_llama(tmp_path / "converted")
    sha = "ab" * 32
    (folder / "gguf.json").write_text(json.dumps({"gguf": "tiny.gguf", "sha256": sha}))
    real = plan.resolve_model
    monkeypatch.setattr(plan, "resolve_model", lambda name, base=None: replace(real(name, base), gguf_sha256=sha))
    write_dataset(tmp_path / "datasets", "sft", "v1", {"train": sft_rows(8), "eval": sft_rows(4, 1)}, task="sft",
                  **GENERATED)  # fmt: skip
    cfg = tiny_sft_config(tmp_path, {"model": folder, "root": tmp_path / "datasets"}, {"max_steps": 1})
    run = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
    assert json.loads((run / "hashes.json").read_text())["entries"]["model:gguf"] == sha
    ok = cli("reproduce", "--verify-only", str(run))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    (folder / "gguf.json").write_text(json.dumps({"gguf": "tiny.gguf", "sha256": "cd" * 32}))
    bad = cli("reproduce", "--verify-only", str(run))
    assert (
        bad.returncode != 0
        and "model:gguf: the model folder was not converted from the GGUF" in bad.stdout + bad.stderr
    )
