"""Tiny random-init models with real tokenizers, built offline into a folder, for training and eval tests.

`make_tiny_llama(dir)` saves a 2-layer LlamaForCausalLM (hidden 32) and `make_tiny_t5(dir)` a 2-layer
T5ForConditionalGeneration (d_model 32), each with a byte-level BPE tokenizer trained on a few sentences with the
`tokenizers` library and wrapped in PreTrainedTokenizerFast. They are plain Hugging Face folders, so the code under
test loads them exactly as it would load a real checkpoint (`from_pretrained(path)`); nothing touches the hub.
The datasets they train on come from tests/builders.py (`write_dataset`, `sft_rows`, `cls_rows`).
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The movie was great and the acting was wonderful.",
    "The food was terrible and the service was slow.",
    "Translate to French: good morning. Bonjour.",
    "Question: what is two plus two? Answer: four.",
    "Summarize: the cat sat on the mat all day long.",
    "I loved this phone, the battery lasts forever!",
    "Worst purchase ever; it broke after one week.",
    "positive negative neutral yes no maybe 0 1 2 3 4 5 6 7 8 9",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"


def build_tokenizer(kind: str = "llama", *, pad: bool = True, chat_template: str | None = None, vocab_size: int = 400):
    """A PreTrainedTokenizerFast: byte-level BPE (never an unknown character), special tokens set per `kind`.

    kind="llama" prepends <s> to every sequence; kind="t5" appends </s> (T5's convention). `pad=False` leaves the
    pad token unset (to test the pad = eos fallback).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, UNK]  # ids 0..3 in this order
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if kind == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, 1)]
        )
    elif kind == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 2)]
        )
    else:
        raise ValueError(kind)
    kwargs = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    if pad:
        kwargs["pad_token"] = PAD
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **kwargs)
    if chat_template:
        fast.chat_template = chat_template
    return fast


# A minimal chat template (Jinja), to test that sft uses the tokenizer's template when it has one.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def make_tiny_llama(
    out_dir: str | Path, *, pad_token: bool = True, chat_template: str | None = None, seed: int = 0
) -> Path:
    """Save a tiny random-init LlamaForCausalLM + tokenizer to `out_dir`; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer("llama", pad=pad_token, chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0 if pad_token else None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_t5(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Save a tiny random-init T5ForConditionalGeneration + tokenizer (pad = decoder start = id 0)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    out = Path(out_dir)
    tok = build_tokenizer("t5")
    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
