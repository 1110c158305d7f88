"""Where a LoRA training step's time goes on the GPU: forward+backward of the PEFT model on fixed batches, with and
without the Trainer around it, and torch.profiler's top CUDA kernels. Run by hand on a GPU:

    python bench/gpu_profile.py [--layers 16 --hidden 2048 --batch 8 --seq 768]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=768)
    args = ap.parse_args()
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    h = args.hidden
    cfg = LlamaConfig(vocab_size=32000, hidden_size=h, intermediate_size=int(h * 2.6875) // 64 * 64,
                      num_hidden_layers=args.layers, num_attention_heads=h // 64, num_key_value_heads=h // 256,
                      use_cache=False)  # fmt: skip
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM", target_modules=targets)
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(4, 32000, (args.batch, args.seq), device="cuda")
    tokens = ids.numel()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    k = 10
    for _ in range(k):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / k
    print(f"params {n / 1e9:.2f}B tokens/step {tokens} step {dt * 1000:.1f} ms -> {tokens / dt:,.0f} tok/s, "
          f"MFU(6N) {6 * n * tokens / dt / 989e12:.3f}")  # fmt: skip
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
