"""Padding-free (packed) sft batches give the same loss and gradients as padded ones: attention never crosses
an example boundary and no example predicts the next one's first token."""

from __future__ import annotations

import pytest

from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.integration


def _features(tok):
    rows = [("Question: what is 2 plus 3?", " 5"), ("Translate: good morning", " Bonjour le monde"), ("Hi", " yes")]
    feats = []
    for prompt, response in rows:
        p = tok(prompt)["input_ids"]
        r = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
        feats.append({"input_ids": p + r, "attention_mask": [1] * (len(p) + len(r)), "labels": [-100] * len(p) + r})
    return feats


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_and_grads_equal_padded(tmp_path, attention):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifily_action.train.data import collator

    folder = make_tiny_llama(tmp_path / "llama")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention, dtype=torch.float32)
    model.eval()
    model.config.use_cache = False  # as the trainer sets it: a KV cache disables transformers' packed-row masking
    feats = _features(tok)

    def loss_and_grad(batch):
        model.zero_grad()
        out = model(**{k: torch.as_tensor(v) for k, v in batch.items()})
        out.loss.backward()
        return out.loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    padded = collator("sft", tok, packing=False)([dict(f) for f in feats])
    packed = collator("sft", tok, packing=True)([dict(f) for f in feats])
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert packed["input_ids"].shape[1] == sum(len(f["input_ids"]) for f in feats)  # no padding at all
    loss_pad, grad_pad = loss_and_grad(padded)
    loss_pack, grad_pack = loss_and_grad(packed)
    assert loss_pack == pytest.approx(loss_pad, rel=1e-5)
    torch.testing.assert_close(grad_pack, grad_pad, rtol=1e-4, atol=1e-6)

    # the test can fail: without restarting position ids the rows attend to each other and the loss moves
    leaky = {k: v for k, v in packed.items() if k != "position_ids"}
    loss_leaky, _ = loss_and_grad(leaky)
    assert abs(loss_leaky - loss_pad) > 1e-5


def test_trainer_turns_the_kv_cache_off(tmp_path):
    from verifily_action.config import from_dict
    from verifily_action.train.models import load_tokenizer, resolve_model
    from verifily_action.train.trainer import load_base

    folder = make_tiny_llama(tmp_path / "llama")
    cfg = from_dict({"task": "sft", "model": str(folder), "dataset": "x@v1", "training": {"packing": True}})
    ref = resolve_model(cfg.model)
    tok, _ = load_tokenizer(ref)
    model = load_base(cfg, ref, tok, None, "fp32")
    assert model.config.use_cache is False
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters() if p.requires_grad)
