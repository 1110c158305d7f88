"""Continued pre-training (`task: pretrain`) of SmolLM2-135M-Instruct on raw text: GPT-4's answers to AlpacaEval's
instructions as documents, packed into blocks; a few steps lower the held-out documents' perplexity against the base
model itself (a `max_steps: 0` run), overall and per the instructions' source set, through the CLI and `compare`."""

from __future__ import annotations

import json

import pytest

from tests.real_llm.runs import (
    baseline_and_trained,
    compared,
    isolated,
    overall_deltas,
    print_table,
    slice_deltas,
    write_splits,
)

pytestmark = pytest.mark.llm

MAX_TOKENS = 96  # a document's length in SmolLM2's tokens: documents short enough for a CPU tier
N_TRAIN, N_EVAL = 48, 24
TRAINING = {"max_steps": 6, "batch_size": 8, "learning_rate": 0.003, "max_length": 64}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2, smollm2_gguf, model_cache, shared_data):
    """(base, trained) on ds `answers@v1`: documents tagged with their instruction's source set (`dataset`)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    raw = json.loads((shared_data / "preference/alpaca_eval/gpt4_model_outputs.json").read_text())
    docs = [
        {"id": f"gpt4-{i}", "text": r["output"].strip(), "tags": {"dataset": r["dataset"]}}
        for i, r in enumerate(raw)
        if 24 <= len(tok(r["output"])["input_ids"]) <= MAX_TOKENS
    ]
    root = tmp_path_factory.mktemp("answers")
    write_splits(root, "answers", docs, N_TRAIN, N_EVAL, "pretrain")
    with isolated(tmp_path_factory, model_cache):
        return baseline_and_trained(root, task="pretrain", model=smollm2_gguf, dataset="answers@v1",
                                    lora={"r": 16, "alpha": 32}, training=TRAINING,
                                    eval={"slice_by": ["dataset"], "batch_size": 8})  # fmt: skip


def test_pretraining_on_the_documents_lowers_held_out_perplexity(cli, runs):
    base, trained = runs
    report = compared(base, trained)
    overall = overall_deltas(report)
    by_set = slice_deltas(report, "perplexity")
    print_table(report, "perplexity")
    assert overall["perplexity"]["delta"] < 0 and overall["perplexity"]["significant"], overall["perplexity"]
    assert overall["loss"]["delta"] < 0, overall["loss"]
    assert len(by_set) >= 3 and sum(d["delta"] < 0 for d in by_set.values()) >= len(by_set) - 1, by_set
