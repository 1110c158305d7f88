"""DPO (`task: dpo`) of SmolLM2-135M-Instruct on AlpacaEval's preference pairs (GPT-4's answer chosen over
text-davinci-003's, the rule of examples/datasets/alpaca_pref) without the pairs' length gap: GPT-4's answers are
about six times longer, which DPO learns first; here both responses of a pair are cut to the same number of tokens,
so what is learned is how the chosen answers are written, not how long they are. Against the base model (a
`max_steps: 0` run: the adapter as initialised, so the policy is the reference and every margin is 0), held-out
preference accuracy and reward margin rise, through the CLI and `compare`."""

from __future__ import annotations

import json

import pytest

from tests.real_llm.runs import baseline_and_trained, compared, isolated, overall_deltas, print_table, write_splits

pytestmark = pytest.mark.llm

BUDGET = 20  # tokens kept of each response (both responses of a pair: the same budget)
N_TRAIN, N_EVAL = 32, 24
EVAL = {"slice_by": ["dataset"], "batch_size": 8}
TRAINING = {"max_steps": 4, "batch_size": 8, "learning_rate": 0.002, "max_length": 96, "dpo_beta": 0.1}


def _cut(tok, text: str) -> str | None:
    """The first BUDGET tokens of `text`, or None when it is shorter (a cut pair needs both sides cut)."""
    ids = tok(text.strip(), add_special_tokens=False)["input_ids"]
    return tok.decode(ids[:BUDGET]) if len(ids) > BUDGET else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2, smollm2_gguf, model_cache, shared_data):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    src = shared_data / "preference/alpaca_eval"
    gpt4, davinci = (json.loads((src / f"{m}_model_outputs.json").read_text()) for m in ("gpt4", "text_davinci_003"))
    pairs = []
    for i, (c, r) in enumerate(zip(gpt4, davinci, strict=True)):
        chosen, rejected = _cut(tok, c["output"]), _cut(tok, r["output"])
        if chosen and rejected and chosen != rejected and len(tok(c["instruction"])["input_ids"]) <= 40:
            pairs.append({"id": f"alpaca-{i:03d}", "prompt": c["instruction"], "chosen": chosen, "rejected": rejected,
                          "tags": {"dataset": c["dataset"]}})  # fmt: skip
    root = tmp_path_factory.mktemp("pref")
    write_splits(root, "pref", pairs, N_TRAIN, N_EVAL, "dpo")
    with isolated(tmp_path_factory, model_cache):
        return baseline_and_trained(root, task="dpo", model=smollm2_gguf, dataset="pref@v1",
                                    lora={"r": 16, "alpha": 32}, training=TRAINING, eval=EVAL)  # fmt: skip


def _overall(run) -> dict:
    (f,) = run.glob("eval/*/eval_results.json")
    return json.loads(f.read_text())["overall"]


def test_dpo_on_length_matched_pairs_learns_the_preference(cli, runs):
    base, trained = runs
    report = compared(base, trained)
    overall = overall_deltas(report)
    print_table(report, "preference_accuracy")
    print_table(report, "reward_margin")
    assert _overall(base)["reward_margin"]["value"] == 0  # the baseline's policy is its reference
    after = _overall(trained)["preference_accuracy"]
    assert after["ci_low"] > 0.5, after  # held-out pairs: the chosen style preferred more often than chance
    assert overall["reward_margin"]["delta"] > 0 and overall["reward_margin"]["significant"], overall
