"""Direct preference optimization (`task: dpo`): (prompt, chosen, rejected) rows trained through TRL's DPOTrainer.

Encoding (`pair_ids`, shared by training and eval so both see the same tokens): the prompt as sft formats it
(train.data.format_prompt: the chat template, else SFT_TEMPLATE; the tokenizer's special tokens unless the template
writes its own), then each response + EOS without special tokens. A pair longer than max_length keeps its start: the
response is cut (counted as truncated); a prompt that fills max_length leaves nothing to compare (dropped, counted).
A row whose chosen equals its rejected has nothing to prefer: it is left out (the data checks count it).

The reference is the base model with the adapter disabled, never a second copy. Given a PEFT model and no
ref_model, TRL copies the adapter into a frozen "ref" adapter; ours is fresh (LoRA's B starts at zero: it adds
nothing), so that copy equals the base and is deleted, and TRL then computes the reference log-probs with the
adapters disabled (trl.trainer.utils.use_adapter(model, None)). The saved adapter holds only the trained one.
The rows reach TRL already tokenized (its own tokenization is skipped) and TRL's truncation is off (max_length None).
TRL turns dropout off (its default), so the policy's and the reference's log-probs are not noised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import Encoded, TokenStats, format_prompt

if TYPE_CHECKING:
    from .trainer import Outcome


def pair_ids(
    tokenizer: Any, prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str], max_length: int
) -> tuple[list[tuple[list[int], list[int], list[int]] | None], int, int]:
    """Each pair's (prompt ids, chosen ids, rejected ids), cut to max_length keeping the start, or None when the
    prompt fills max_length; and how many pairs were cut, and the longest prompt + response in tokens."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    eos = tokenizer.eos_token or ""
    p_ids = tokenizer([format_prompt("sft", str(p), tokenizer) for p in prompts], add_special_tokens=not chat)
    c_ids = tokenizer([str(c) + eos for c in chosen], add_special_tokens=False)["input_ids"]
    r_ids = tokenizer([str(r) + eos for r in rejected], add_special_tokens=False)["input_ids"]
    out: list[tuple[list[int], list[int], list[int]] | None] = []
    cut = longest = 0
    for p, c, r in zip(p_ids["input_ids"], c_ids, r_ids, strict=True):
        longest = max(longest, len(p) + max(len(c), len(r)))
        room = max_length - len(p)
        if room <= 0:
            out.append(None)
            continue
        cut += len(c) > room or len(r) > room
        out.append((list(p), list(c[:room]), list(r[:room])))
    return out, cut, longest


def encode_pairs(rows: Any, tokenizer: Any, max_length: int) -> Encoded:
    """The train split's columns for TRL (prompt_ids, chosen_ids, rejected_ids; input_ids = prompt + chosen and
    `length` for the length grouping), its TokenStats and notes (identical pairs, truncation, dropped rows)."""
    stats = TokenStats(rows=len(rows), max_length=max_length)
    prompts, chosen, rejected = (list(map(str, rows[k])) for k in ("prompt", "chosen", "rejected"))
    same = [i for i in range(len(rows)) if chosen[i] == rejected[i]]
    keep = [i for i in range(len(rows)) if chosen[i] != rejected[i]]
    pairs, stats.truncated, stats.longest = pair_ids(
        tokenizer, [prompts[i] for i in keep], [chosen[i] for i in keep], [rejected[i] for i in keep], max_length
    )
    kept = [x for x in pairs if x is not None]
    stats.dropped = len(pairs) - len(kept)
    cols: dict[str, list[Any]] = {
        "prompt_ids": [p for p, _, _ in kept],
        "chosen_ids": [c for _, c, _ in kept],
        "rejected_ids": [r for _, _, r in kept],
        "input_ids": [p + c for p, c, _ in kept],
    }
    cols["length"] = [len(p) + max(len(c), len(r)) for p, c, r in kept]
    stats.tokens = sum(len(p) + len(c) + len(r) for p, c, r in kept)
    notes = []
    if same:
        notes.append(f"{len(same)} of {len(rows)} rows have chosen equal to rejected: left out (nothing to prefer)")
    if stats.truncated:
        notes.append(
            f"{stats.truncated} of {len(rows)} pairs are longer than max_length {max_length} tokens: their responses"
            f" were cut (longest: {stats.longest})"
        )
    if stats.dropped:
        notes.append(f"{stats.dropped} pairs were left out: their prompt fills max_length {max_length}")
    return Encoded(cols, stats, notes)


def _trainer_class() -> Any:
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on rows `encode_pairs` tokenized (the encoding eval scores with), not its own."""

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset

    return PretokenizedDPOTrainer


def dpo_config(cfg: Any, output_dir: Path, precision: str, device: str) -> Any:
    """TRL's DPOConfig: the run's TrainingArguments (train.trainer.training_arguments, the one mapping of the
    config's `training`) with the DPO settings laid over them."""
    import dataclasses

    from trl import DPOConfig

    from .trainer import training_arguments

    base = training_arguments(cfg, output_dir, precision, device)
    kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return DPOConfig(**kwargs, beta=float(cfg.training.dpo_beta), max_length=None, precompute_ref_log_probs=False)


def build_and_train(
    cfg: Any,
    model_ref: Any,
    tokenizer: Any,
    train_ds: Any,
    ckpt_dir: Path,
    log_path: Path,
    resume_from: str | None,
    echo: Any,
) -> Outcome:
    """train.trainer.build_and_train for task dpo: the same set-up (base + LoRA, callbacks) and loop (baseline)."""
    from .trainer import prepare, run_trainer

    parts = prepare(cfg, model_ref, tokenizer, None, log_path, echo)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    trainer = _trainer_class()(
        model=parts.model,
        ref_model=None,
        args=dpo_config(cfg, ckpt_dir, parts.precision, parts.device),
        train_dataset=train_ds,
        processing_class=tokenizer,
        callbacks=parts.callbacks(cfg, ckpt_dir, None),
    )
    peft_model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in peft_model.peft_config:  # the copy of a fresh adapter is the base: disable the adapter instead
        peft_model.delete_adapter("ref")
    echo(f"device {parts.device}, precision {parts.precision}, {len(train_ds)} pairs, beta {cfg.training.dpo_beta}")
    return run_trainer(trainer, cfg, parts.log_cb, parts.stop_cb, resume_from, echo)
