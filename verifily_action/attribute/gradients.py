"""Per-example gradients of a run's adapter parameters and their random projection, for TracIn (`tracin`).

- The loss of one row is the one training optimizes for it (`train.data.encode`'s input ids and labels): sft, the
  mean cross-entropy of its label tokens (the response; the whole text for text-only rows) after the causal shift;
  seq2seq, the mean cross-entropy of its target tokens; classification, the cross-entropy of its label.
- The parameters are the adapter's trainable ones: LoRA's A and B matrices, and the modules trained in full with
  them (a classification head). Their per-example gradients come from one batched forward and backward: every such
  parameter sits in an `nn.Linear`, whose weight gradient for one row is the sum over its positions of (output
  gradient) x (input) and whose bias gradient is the sum of output gradients, so forward hooks keep each layer's
  input and output, `autograd.grad` gives the outputs' gradients (and skips the parameters' summed ones), and every
  row's gradient follows at once (as Opacus and LoGra do). Rows do not interact (the loss is a sum of per-row
  losses; padding is masked), so these equal one backward per row; a model where that cannot be read off (a
  trainable parameter outside a Linear, rows folded into one axis) falls back to one backward per row.
- `Projector` maps a gradient of D numbers to `dim` with a fixed random matrix P whose E[P'P] = I, so
  E<Pg, Pg'> = <g, g'> (TRAK, LoGra). "sketch" (the default): a sparse Rademacher matrix with one +-1 per column
  (CountSketch: each gradient coordinate is added, with a random sign, to one of the `dim` outputs); its estimate's
  variance is at most the dense Gaussian's, (|g|^2 |g'|^2 + <g, g'>^2) / dim, and it costs O(D) per row where a
  dense matrix costs O(D x dim) and, when it does not fit in memory, drawing D x dim numbers again for every batch
  (1.9 s a batch for MiniLM's 0.68M LoRA parameters). "gaussian": dense, entries N(0, 1/dim). Each parameter's
  part of the matrix is drawn from a generator seeded by (seed, parameter name, chunk), CHUNK coordinates at a time,
  so it never depends on batch size or order and memory stays bounded: parts are kept while they fit in
  `cache_bytes`, and drawn again for each batch beyond that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

CHUNK = 65536  # projection rows drawn at once
CACHE_BYTES = 256 * 2**20


def trainable(model: Any) -> dict[str, Any]:
    """The adapter's parameters (name -> tensor): LoRA matrices and modules saved with the adapter."""
    return {n: p for n, p in model.named_parameters() if ".lora_" in n or ".modules_to_save." in n}


def pad_batch(task: str, rows: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors of encoded rows (input_ids and labels as `train.data.encode` makes them)."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    if task == "classification":
        labels = torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long)
    else:
        lw = max(len(r["labels"]) for r in rows)
        labels = torch.full((len(rows), lw), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def row_losses(model: Any, task: str, batch: Mapping[str, Any]) -> Any:
    """Each row's training loss (a tensor of B)."""
    import torch.nn.functional as F

    if task == "classification":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return F.cross_entropy(logits.float(), batch["labels"], reduction="none")
    labels = batch["labels"]
    if task == "seq2seq":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = labels[:, 1:]
    tokens = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return tokens.sum(1) / (labels != -100).sum(1).clamp(min=1)


def per_example_grads(model: Any, task: str, batch: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """name -> (B, *shape) gradients of each row's loss with respect to `params` (float32)."""
    import torch

    b = int(batch["input_ids"].shape[0])
    layers: dict[Any, tuple[str | None, str | None]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            w, bias = f"{name}.weight", f"{name}.bias"
            if w in params or bias in params:
                layers[mod] = (w if w in params else None, bias if bias in params else None)
    covered = {n for pair in layers.values() for n in pair if n}
    if covered != set(params):
        return loop_grads(model, task, batch, params)
    seen: list[tuple[Any, Any, Any]] = []  # (layer, its input, its output), in call order

    def forward_hook(mod: Any, inputs: Any, output: Any) -> None:
        if output.requires_grad:
            seen.append((mod, inputs[0].detach(), output))

    handles = [mod.register_forward_hook(forward_hook) for mod in layers]
    try:
        with _only(model, params):
            loss = row_losses(model, task, batch).sum()
            # the layers' output gradients only: autograd skips the parameters' own (summed) gradients
            out_grads = torch.autograd.grad(loss, [o for _, _, o in seen], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        out[name] = out[name] + value if name in out else value

    for (mod, x, _), g in zip(seen, out_grads, strict=True):
        if g is None:
            continue
        if x.shape[0] != b or g.shape[0] != b:  # rows folded into one axis: read them one at a time instead
            return loop_grads(model, task, batch, params)
        weight_name, bias_name = layers[mod]
        gf, xf = g.reshape(b, -1, g.shape[-1]).float(), x.reshape(b, -1, x.shape[-1]).float()
        if weight_name is not None:
            add(weight_name, torch.einsum("bto,bti->boi", gf, xf))
        if bias_name is not None:
            add(bias_name, gf.sum(1))
    for n, p in params.items():
        if n not in out:
            out[n] = torch.zeros((b, *p.shape), dtype=torch.float32, device=p.device)
    return out


@contextmanager
def _only(model: Any, params: Mapping[str, Any]) -> Iterator[None]:
    """Gradients for `params` only, while inside; every parameter's requires_grad restored and .grad cleared after."""
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in params)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(saved[n])
            p.grad = None


def loop_grads(model: Any, task: str, batch: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The same gradients, one row at a time (the fallback, and the slow reference)."""
    import torch

    names = list(params)
    rows: list[tuple[Any, ...]] = []
    with _only(model, params):
        for i in range(int(batch["input_ids"].shape[0])):
            keep = int(batch["attention_mask"][i].sum())
            one = {k: v[i : i + 1, :keep] if k != "labels" else v[i : i + 1] for k, v in batch.items()}
            loss = row_losses(model, task, one).sum()
            rows.append(torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True))
    return {
        n: torch.stack([g[j] if g[j] is not None else torch.zeros_like(params[n]) for g in rows]).float()
        for j, n in enumerate(names)
    }


def _seed(seed: int, name: str, chunk: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}:{chunk}".encode()).digest()[:8], "little") >> 1


class Projector:
    """Gradients (name -> (B, *shape)) -> (B, dim). kind "sketch" or "gaussian" (see the module docstring), or
    "identity" (dim = the total size; the gradients laid end to end in `sizes`' order, for exact dot products)."""

    KINDS = ("sketch", "gaussian")

    def __init__(self, sizes: Mapping[str, int], dim: int, seed: int = 0, kind: str = "sketch", cache_bytes=None):
        total = sum(sizes.values())
        if kind == "identity" and dim != total:
            raise ValueError(f"an identity projection has dim = {total}, not {dim}")
        if kind not in (*self.KINDS, "identity"):
            raise ValueError(kind)
        self.sizes, self.dim, self.seed, self.kind = dict(sizes), dim, seed, kind
        self.cache_bytes = CACHE_BYTES if cache_bytes is None else cache_bytes
        self._cache: dict[tuple[str, int], Any] = {}
        self._cached = 0

    def _part(self, name: str, chunk: int, rows: int, device: Any) -> Any:
        """The matrix's rows for coordinates [chunk * CHUNK, + rows) of `name`: a (rows x dim) dense block, or the
        (bucket, sign) of each coordinate."""
        import torch

        key = (name, chunk)
        if key in self._cache:
            return self._cache[key]
        gen = torch.Generator().manual_seed(_seed(self.seed, name, chunk))
        if self.kind == "gaussian":
            part: Any = (torch.randn((rows, self.dim), generator=gen) / self.dim**0.5).to(device)
            size = part.numel() * 4
        else:
            bucket = torch.randint(0, self.dim, (rows,), generator=gen)
            sign = torch.randint(0, 2, (rows,), generator=gen).float() * 2 - 1
            part, size = (bucket.to(device), sign.to(device)), rows * 12
        if self._cached + size <= self.cache_bytes:
            self._cache[key] = part
            self._cached += size
        return part

    def __call__(self, grads: Mapping[str, Any]) -> Any:
        import torch

        first = next(iter(grads.values()))
        b = int(first.shape[0])
        out = torch.zeros((b, self.dim), dtype=torch.float32, device=first.device)
        offset = 0
        for name, size in self.sizes.items():
            flat = grads[name].reshape(b, -1).float()
            if self.kind == "identity":
                out[:, offset : offset + size] = flat
                offset += size
                continue
            for c, start in enumerate(range(0, size, CHUNK)):
                x = flat[:, start : start + CHUNK]
                part = self._part(name, c, x.shape[1], first.device)
                if self.kind == "gaussian":
                    out += x @ part
                else:
                    out.index_add_(1, part[0], x * part[1])
        return out
