"""Build the model, the LoRA wrapper and the Hugging Face Trainer for a config, and run it.

The same function serves a fresh run and a resumed one (`resume_from` = a checkpoint folder): the Trainer restores
the adapter, optimizer, scheduler, RNG states and data position, so a resumed run ends with the same weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ranks
from .data import TokenCounter, collator
from .device import pick_device, resolve_precision
from .label_tokens import lm_task
from .lora import apply_lora, missing_modules, quantization_config


@dataclass
class Outcome:
    model: Any
    global_step: int
    interrupted: bool
    summary: dict[str, Any] = field(default_factory=dict)


def training_arguments(cfg: Any, output_dir: Path, precision: str, device: str) -> Any:
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    t = cfg.training
    cls = Seq2SeqTrainingArguments if cfg.task == "seq2seq" else TrainingArguments
    # warmup_steps takes a ratio when it is a float below 1
    warmup = min(float(t.warmup_ratio), 0.999999) if t.warmup_ratio else 0
    return cls(
        output_dir=str(output_dir),
        num_train_epochs=float(t.epochs),
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=warmup,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.checkpoint_steps else "no",
        save_steps=t.checkpoint_steps or 500,
        save_total_limit=2,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # data.encode keeps only model inputs (+ `length`, dropped by the collator)
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=True,
        dataloader_num_workers=0,
        eval_strategy="no",
        torch_compile=bool(t.compile),
        **ranks.strategy_args(cfg),  # under a multi-process launch: fsdp through accelerate's plugin
    )


def load_base(cfg: Any, model_ref: Any, tokenizer: Any, label_map: dict[str, int] | None, precision: str) -> Any:
    """Base model (quantized for QLoRA) wrapped with LoRA; seeded so the head and LoRA init are reproducible."""
    import torch
    from transformers import set_seed

    from .models import load_model

    set_seed(cfg.training.seed)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    qconf = quantization_config(cfg.quantization, dtype or torch.float32)
    task = lm_task(cfg)  # classification by label tokens trains a causal LM, batched as sft
    model = load_model(
        task,
        model_ref,
        tokenizer,
        label_map=label_map,
        quantization_config=qconf,
        # The frozen base is stored in bf16 when training in bf16 (half the memory traffic, no per-step casts);
        # trainable parameters are kept in fp32 below. fp16 keeps fp32 weights: GradScaler needs fp32 grads.
        dtype=dtype if (qconf is not None or precision == "bf16") else None,
        attn_implementation=None if cfg.training.attention == "auto" else cfg.training.attention,
    )
    extra: list[str] = []
    if task == "classification":
        extra = missing_modules(_missing_keys(model, model_ref.path))
    model = apply_lora(
        model,
        task,
        cfg.lora,
        quantized=qconf is not None,
        gradient_checkpointing=cfg.training.gradient_checkpointing,
        extra_save=extra,
    )
    # No KV cache while training: it is never read, and transformers only honours packed rows' boundaries
    # (restarting position ids) when no cache is passed — with one, packed rows would attend to each other.
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # optimizer state and updates in fp32 (AMP computes in bf16/fp16)
    return model


def _missing_keys(model: Any, folder: Path) -> list[str]:
    """Parameters of `model` absent from the checkpoint's safetensors (randomly initialised at load)."""
    from safetensors import safe_open

    have: set[str] = set()
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            have.update(st.keys())
    if not have:
        return []
    prefix = getattr(model, "base_model_prefix", "")
    out = []
    for name, _ in model.named_parameters():
        bare = name[len(prefix) + 1 :] if prefix and name.startswith(prefix + ".") else name
        if name not in have and bare not in have:
            out.append(name)
    return out


@dataclass
class Parts:
    """What every Trainer here is built from (`prepare`): the device, precision, base + LoRA, and the callbacks."""

    device: str
    precision: str
    model: Any
    log_cb: Any
    stop_cb: Any

    def callbacks(self, cfg: Any, ckpt_dir: Path, label_map: dict[str, int] | None) -> list[Any]:
        from .callbacks import CheckpointCallback
        from .snapshots import SnapshotCallback

        # CheckpointCallback last: it sees the saves the others ask for; ckpt_dir is <run>/checkpoints
        return [
            self.log_cb,
            self.stop_cb,
            SnapshotCallback(cfg.training.snapshots, ckpt_dir.parent, label_map),
            CheckpointCallback(cfg.training.checkpoint_minutes),
        ]


def prepare(
    cfg: Any, model_ref: Any, tokenizer: Any, label_map: dict[str, int] | None, log_path: Path, echo: Any
) -> Parts:
    """The set-up shared by transformers' Trainer (`build_and_train`) and TRL's DPOTrainer (train/dpo.py): quiet
    libraries, device and precision, the base model with LoRA, the token counter, the log and Ctrl-C callbacks."""
    import transformers

    from .callbacks import InterruptCallback, LogCallback

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\..*")
    device = pick_device()
    precision = resolve_precision(cfg.training.precision, device)
    model = load_base(cfg, model_ref, tokenizer, label_map, precision)
    counter = TokenCounter()
    counter.attach(model)
    return Parts(device, precision, model, LogCallback(log_path, counter, echo), InterruptCallback(echo))


def build_and_train(
    cfg: Any,
    model_ref: Any,
    tokenizer: Any,
    train_ds: Any,
    label_map: dict[str, int] | None,
    ckpt_dir: Path,
    log_path: Path,
    resume_from: str | None,
    echo: Any,
) -> Outcome:
    from transformers import Seq2SeqTrainer, Trainer

    if cfg.task == "dpo":  # TRL's DPOTrainer; the reference is the base with the adapter disabled (train/dpo.py)
        from .dpo import build_and_train as train_dpo

        return train_dpo(cfg, model_ref, tokenizer, train_ds, ckpt_dir, log_path, resume_from, echo)
    parts = prepare(cfg, model_ref, tokenizer, label_map, log_path, echo)
    cls = Seq2SeqTrainer if cfg.task == "seq2seq" else Trainer
    trainer = cls(
        model=parts.model,
        args=training_arguments(cfg, ckpt_dir, parts.precision, parts.device),
        train_dataset=train_ds,
        data_collator=collator(lm_task(cfg), tokenizer, parts.model, packing=cfg.training.packing),
        processing_class=tokenizer,
        callbacks=parts.callbacks(cfg, ckpt_dir, label_map),
    )
    rows = f"{len(train_ds)} rows" if hasattr(train_ds, "__len__") else "streamed rows"  # data.streaming
    echo(f"device {parts.device}, precision {parts.precision}, {rows}")
    return run_trainer(trainer, cfg, parts.log_cb, parts.stop_cb, resume_from, echo)


def run_trainer(trainer: Any, cfg: Any, log_cb: Any, stop_cb: Any, resume_from: str | None, echo: Any) -> Outcome:
    """Train (Ctrl-C handled by `stop_cb`; `max_steps: 0` trains nothing: a baseline run) and say how it ended. The
    one loop of every Trainer here: transformers' (`build_and_train`) and TRL's DPOTrainer (`dpo`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    stop_cb.install()
    try:
        if cfg.training.max_steps == 0:  # a baseline run: the adapter as initialised, nothing trained
            echo("max_steps 0: a baseline run, nothing trained")
            return Outcome(trainer.model, 0, False, {})
        result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        stop_cb.uninstall()
        log_cb.close()
    summary = dict(log_cb.summary or getattr(result, "metrics", {}) or {})
    # under FSDP the adapter is gathered from every rank's shards (all ranks take part)
    return Outcome(ranks.gathered(trainer), trainer.state.global_step, stop_cb.requested, summary)
