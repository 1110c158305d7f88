"""PEFT LoRA on the base model: target modules per architecture (`auto`), QLoRA through bitsandbytes.

QLoRA (`quantization: 4bit` = nf4 with double quantization, or `8bit`) needs CUDA and bitsandbytes;
`check_quantization` says so before anything is loaded, so a CPU machine fails in a second instead of after
loading a model.
"""

from __future__ import annotations

from typing import Any

from ..errors import VerifilyError

# `auto`: attention and MLP projections of the common families. Unknown architectures use PEFT's "all-linear"
# (every Linear layer except the output head).
AUTO_TARGETS: dict[str, list[str]] = {
    **dict.fromkeys(
        ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2"),
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ),
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "electra"), ["query", "key", "value", "dense"]),
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    **dict.fromkeys(("t5", "mt5", "umt5"), ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"]),
    **dict.fromkeys(("bart", "mbart", "opt"), ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]),
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}
HEADS = ("classifier", "score", "lm_head", "pooler", "qa_outputs")
TASK_TYPES = {
    "sft": "CAUSAL_LM",
    "pretrain": "CAUSAL_LM",
    "dpo": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
    "classification": "SEQ_CLS",
}


def check_quantization(quantization: str) -> None:
    """Raise before any loading when QLoRA cannot run here."""
    if quantization == "none":
        return
    import torch

    if not torch.cuda.is_available():
        raise VerifilyError(
            f"quantization: {quantization} (QLoRA) needs a CUDA GPU, and none is available here",
            hint="set `quantization: none` to train in full precision on this machine, or run on a CUDA machine",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise VerifilyError(
            f"quantization: {quantization} needs the bitsandbytes package",
            hint="pip install 'verifily-action[cuda]' (or bitsandbytes)",
        ) from e


def quantization_config(quantization: str, compute_dtype: Any) -> Any:
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def target_modules(model: Any, spec: str | list[str]) -> str | list[str]:
    """`auto` -> the family's projections present in this model, else "all-linear"; a list is checked to exist."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if spec != "auto":
        missing = [m for m in spec if m not in names and not any(n.endswith(m) for n, _ in model.named_modules())]
        if missing:
            raise VerifilyError(
                f"lora.target_modules {missing} match no module of this model",
                hint=f"leave it `auto`, or pick from: {', '.join(sorted(names - {''})[:40])}",
            )
        return list(spec)
    wanted = AUTO_TARGETS.get(getattr(model.config, "model_type", ""), [])
    present = [m for m in wanted if m in names]
    return present or "all-linear"


def apply_lora(model: Any, task: str, lora: Any, *, quantized: bool, gradient_checkpointing: bool, extra_save=()):
    """Wrap `model` with a LoRA adapter (PeftModel). `extra_save`: modules trained in full and saved with the
    adapter (e.g. a classification head's companions the checkpoint did not have)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    targets = target_modules(model, lora.target_modules)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type=TASK_TYPES[task],
        modules_to_save=list(extra_save) or None,
        exclude_modules=list(extra_save) or None,
    )
    return get_peft_model(model, config)


def missing_modules(missing_keys: list[str]) -> list[str]:
    """Modules whose weights the checkpoint lacked (randomly initialised), besides the task head PEFT already
    saves: they must be trained and saved with the adapter, or eval would rebuild them at random."""
    out = []
    for key in missing_keys:
        module = key.rsplit(".", 1)[0]
        if not any(part in HEADS[:2] for part in module.split(".")) and module not in out:
            out.append(module)
    return out
