"""A real pretrained instruct model, offline: SmolLM2-135M-Instruct from its GGUF file (conftest.py), converted into
an ordinary model folder that answers sensibly, its GGUF hash in the run's chain; then sft through the CLI on real
instructions (AlpacaEval's, with text-davinci-003's answers) lowers the held-out loss and raises the generation
metrics against the base model itself — a `max_steps: 0` baseline run — in `compare`, per the instructions' source
set."""

from __future__ import annotations

import json

import pytest

from tests.real_llm.runs import baseline_and_trained, compared, isolated, overall_deltas, print_table, write_splits

pytestmark = pytest.mark.llm

MAX_TOKENS = 96  # instruction + answer, in SmolLM2's tokens: the rows short enough for a CPU tier
N_TRAIN, N_EVAL = 128, 24
EVAL = {"slice_by": ["dataset"], "max_new_tokens": 48, "batch_size": 24}


def test_the_converted_model_answers_sensibly(smollm2, smollm2_gguf):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifily_action.hashing import sha256_file

    source = json.loads((smollm2 / "gguf.json").read_text())
    assert source["sha256"] == sha256_file(smollm2_gguf) and source["architecture"] == "llama"
    assert (smollm2 / "model.safetensors").is_file() and not (smollm2 / "pytorch_model.bin").exists()
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config
    tok = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    assert tok.chat_template  # the instruct model's chat template came along
    ids = tok.apply_chat_template([{"role": "user", "content": "Name three colors."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)  # fmt: skip
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).lower()
    assert sum(c in answer for c in ("red", "blue", "green", "yellow", "purple", "orange")) >= 2, answer


@pytest.fixture(scope="module")
def alpaca(tmp_path_factory, smollm2, shared_data):
    """ds alpaca@v1: the shortest AlpacaEval instructions with text-davinci-003's answers, tagged with their source
    set (`dataset`), shuffled with a fixed seed into train and eval."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    raw = json.loads((shared_data / "preference/alpaca_eval/text_davinci_003_model_outputs.json").read_text())
    rows = [
        {"id": f"ae{i}", "prompt": r["instruction"], "response": r["output"].strip(), "tags": {"dataset": r["dataset"]}}
        for i, r in enumerate(raw)
        if len(tok(r["instruction"] + " " + r["output"])["input_ids"]) <= MAX_TOKENS
    ]
    root = tmp_path_factory.mktemp("alpaca")
    write_splits(root, "alpaca", rows, N_TRAIN, N_EVAL, "sft")
    return root


@pytest.fixture(scope="module")
def runs(alpaca, smollm2_gguf, model_cache, tmp_path_factory):
    """(baseline run, trained run): the converted model as it is (`max_steps: 0`), and after 12 steps of sft."""
    training = {"batch_size": 8, "max_length": MAX_TOKENS + 16, "max_steps": 12, "learning_rate": 0.002}
    with isolated(tmp_path_factory, model_cache):
        return baseline_and_trained(alpaca, task="sft", model=smollm2_gguf, dataset="alpaca@v1",
                                    lora={"r": 16, "alpha": 32}, training=training, eval=EVAL)  # fmt: skip


def test_sft_on_real_instructions_beats_the_base_model(cli, runs, smollm2, smollm2_gguf):
    from verifily_action.hashing import sha256_file

    base, trained = runs
    chain = json.loads((base / "hashes.json").read_text())
    assert sha256_file(smollm2_gguf) in json.dumps(chain)  # model:gguf: the run key and chain cover the GGUF
    assert json.loads((base / "run_meta.json").read_text())["model_path"] == str(smollm2)
    report = compared(base, trained)
    overall = overall_deltas(report)
    for metric in ("loss", "token_f1", "rouge_l"):
        print_table(report, metric)
    assert overall["loss"]["delta"] < 0 and overall["loss"]["significant"], overall["loss"]
    assert overall["token_f1"]["delta"] > 0 and overall["rouge_l"]["delta"] > 0, overall


def test_the_trained_run_exports_merged_and_computes_what_the_adapter_does(cli, runs, smollm2, tmp_path):
    """`verifily export --merged` of the real model's trained run: the merged folder loads with plain transformers
    and gives the logits of the base model with the run's adapter applied."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = runs[1]
    out = cli("export", "--run", str(run), "--merged", str(tmp_path / "merged"))
    assert out.returncode == 0, out.stderr
    card = (tmp_path / "merged" / "README.md").read_text()
    assert json.loads((run / "run_meta.json").read_text())["root_hash"] in card
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids = tok("Give three tips for staying healthy.", return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2), str(run / "adapter")).eval()
    base = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    with torch.no_grad():
        want, got, before = adapted(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, want, atol=1e-3), (got - want).abs().max()
    assert (before - want).abs().max() > 1e-2  # the adapter changed the model: the check above has teeth
