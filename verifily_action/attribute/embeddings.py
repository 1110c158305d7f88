"""Text embeddings from a run's own model, for KNN-Shapley: the encoder's last hidden states with the run's adapter
applied (merged), mean-pooled over the real tokens and L2-normalized (Euclidean order = cosine order). `base=True`
embeds with the base model alone (the adapter left out), e.g. to value rows before any training. A run that
classifies by label tokens (`classifier: label_tokens`) embeds with its causal LM's last hidden states the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BATCH = 32


def load(run: Any, *, base: bool = False) -> Any:
    """The run's classification model (evaluate.inference.LoadedModel); with `base`, the adapter is not applied."""
    from ..evaluate import inference
    from ..evaluate.runner import base_model_dir
    from ..runs.layout import ADAPTER, TOKENIZER

    lm = inference.load_for_eval(
        "classification",
        base_model_dir(run),
        run.dir / ADAPTER,
        run.dir / TOKENIZER,
        max_length=run.config.training.max_length,
    )
    if base:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(base_model_dir(run))
        model.to(lm.device)
        model.eval()
        lm.model = model
    return lm


def embed(lm: Any, texts: Sequence[str], batch_size: int = DEFAULT_BATCH, progress: Any = None) -> np.ndarray:
    """One row per text (float32, unit length): mean of the last hidden layer over the attention mask."""
    import torch

    from ..evaluate.inference import length_sorted_batches, tokenize_rows

    tok = lm.tokenizer
    enc, _ = tokenize_rows(tok, texts, lm.max_length)
    out: np.ndarray | None = None
    done = 0
    with torch.inference_mode():
        for batch in length_sorted_batches([len(x) for x in enc["input_ids"]], batch_size):
            feats = tok.pad([{k: enc[k][i] for k in enc} for i in batch], return_tensors="pt").to(lm.device)
            hidden = lm.model(**feats, output_hidden_states=True).hidden_states[-1].float()
            mask = feats["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[batch] = pooled
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def model_label(base: bool) -> str:
    return "base model (no adapter)" if base else "the run's model (adapter merged)"
