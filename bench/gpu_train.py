"""GPU training throughput: `verifily train` against a plain HF Trainer + PEFT script, same model, data, length.

    python bench/gpu_train.py --out bench/out/gpu [--layers 16 --hidden 2048 --steps 40 --batch 8 --max-length 1024]

Builds a Llama-architecture model of about 1B parameters from a config (random init: no hub access), an sft dataset
of prompt/response rows with realistic, varied lengths (texts from examples/datasets), then trains LoRA (r=16, all
attention and MLP projections) in bf16 with:
  plain   a ~40-line HF Trainer + PEFT script: bf16 weights, dynamic padding, random batches
  verifily  `verifily train` with its defaults, then with each speed lever (packing, torch.compile)
Every variant runs in this one process on the same GPU. Throughput is real (unpadded) tokens/s over the steady
state (logging windows after the first), metered by the same callback for all variants; MFU uses the 6·N·tokens/s
convention (N = all parameters) against the GPU's dense bf16 peak, and also 4·N (a frozen base has no weight
gradients). Loss curves are printed side by side so a speed-up that changes the learning is visible.
Writes results.json under --out. Needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEVICE = "cuda"  # main() falls back to "cpu" for a smoke run of the script itself
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def build_model(out: Path, layers: int, hidden: int) -> tuple[Path, int]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = _texts()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8000,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.6875) // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 256),
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    fast.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out, n


def _texts() -> list[str]:
    out = []
    for f in sorted((REPO / "examples" / "datasets" / "ds_demo").glob("v*/train.jsonl")):
        out += [json.loads(line)["text"] for line in f.read_text().splitlines() if line.strip()]
    return out


def build_dataset(root: Path, rows: int, max_words: int) -> Path:
    """sft rows: a prompt of 10..max_words words of review sentences, a response of 5..120 words."""
    rnd = random.Random(0)
    sents = _texts()
    folder = root / "gpu_bench" / "v1"
    folder.mkdir(parents=True, exist_ok=True)

    def words(k: int) -> str:
        out: list[str] = []
        while len(out) < k:
            out += rnd.choice(sents).split()
        return " ".join(out[:k])

    with open(folder / "train.jsonl", "w") as f:
        for i in range(rows):
            p, r = words(rnd.randint(10, max_words)), words(rnd.randint(5, 120))
            f.write(json.dumps({"id": f"r{i:06d}", "prompt": f"Summarize: {p}", "response": r, "tags": {}}) + "\n")
    from verifily_action.cli import main

    assert main(["dataset", "init", str(folder), "--name", "gpu_bench", "--version", "v1", "--force"]) == 0
    return folder / "manifest.yaml"


def meter(model):
    from verifily_action.train.data import TokenCounter

    counter = TokenCounter()
    counter.attach(model)
    return counter


def plain(model_dir: Path, manifest: Path, args, log: Path) -> None:
    """The plain script: what a user writes by hand with HF Trainer + PEFT (bf16 weights, dynamic padding)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from verifily_action.datasets import load_split, resolve
    from verifily_action.train.callbacks import LogCallback
    from verifily_action.train.data import SFT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = load_split(resolve(str(manifest)), "train")

    def enc(row):
        p = tok(SFT_TEMPLATE.format(prompt=row["prompt"]))["input_ids"]
        r = tok(row["response"] + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = (p + r)[: args.max_length]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ([-100] * len(p) + r)[: len(ids)]}

    ds = ds.map(enc, remove_columns=ds.column_names)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    model = get_peft_model(model, lora)
    targs = TrainingArguments(
        output_dir=str(log.parent / "plain_ckpt"),
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=2e-4,
        bf16=DEVICE == "cuda",
        use_cpu=DEVICE == "cpu",
        logging_steps=args.log_every,
        report_to=[],
        save_strategy="no",
        seed=42,
        disable_tqdm=True,
    )
    counter = meter(model)
    cb = LogCallback(log, counter, lambda s: None, tty=False)
    trainer = Trainer(
        model=model, args=targs, train_dataset=ds, data_collator=DataCollatorForSeq2Seq(tok), callbacks=[cb]
    )
    trainer.train()
    cb.close()


def ours(model_dir: Path, manifest: Path, args, out: Path, name: str, extra: dict) -> Path:
    import yaml

    from verifily_action.train.job import train
    from verifily_action.train.plan import TrainOptions

    training = {
        "max_steps": args.steps,
        "batch_size": args.batch,
        "learning_rate": 2e-4,
        "max_length": args.max_length,
        "logging_steps": args.log_every,
        "precision": "bf16" if DEVICE == "cuda" else "fp32",
        "seed": 42,
        **extra,
    }
    cfg = {
        "task": "sft",
        "model": str(model_dir),
        "dataset": str(manifest),
        "run_name": name,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "training": training,
        "output_dir": str(out / "runs"),
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = train(TrainOptions(config=path, force=True), echo=lambda s: None)
    return res.run_dir / "train_log.jsonl"


def eval_generation(model_dir: Path, run_dir: Path, manifest: Path, n: int, batch: int, k: int) -> dict:
    """Eval's batched generation (length-sorted, left-padded, KV cache) against one prompt at a time."""
    import torch

    from verifily_action.datasets import load_split, resolve
    from verifily_action.evaluate import inference as inf
    from verifily_action.train.data import SFT_TEMPLATE

    rows = load_split(resolve(str(manifest)), "train").select(range(n))
    prompts = [" ".join(p.split()[:64]) for p in rows["prompt"]]
    refs = list(rows["response"])
    lm = inf.load_for_eval(
        "sft", str(model_dir), run_dir / "adapter", run_dir / "tokenizer", max_length=512, merge=True
    )

    def batched() -> None:
        inf.generate_causal(lm, prompts, refs, batch, k)

    def sequential() -> None:
        tok = lm.tokenizer
        for prompt in prompts:
            enc = tok(SFT_TEMPLATE.format(prompt=prompt), return_tensors="pt", return_token_type_ids=False)
            enc = {key: v.to(DEVICE) for key, v in enc.items()}
            with torch.inference_mode():
                lm.model.generate(
                    **enc, max_new_tokens=k, min_new_tokens=k, do_sample=False, pad_token_id=tok.pad_token_id
                )

    out = {}
    for name, fn in (("batched", batched), ("sequential", sequential)):
        fn()  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out[f"{name}_examples_per_s"] = round(n / (time.perf_counter() - t), 1)
    out["speedup"] = round(out["batched_examples_per_s"] / out["sequential_examples_per_s"], 2)
    out.update(n=n, batch=batch, max_new_tokens=k)
    return out


def summarize(log: Path) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("loss") is not None]
    steady = [r["tokens_per_s"] for r in rows[1:] if r.get("tokens_per_s")]
    tps = sum(steady) / len(steady) if steady else None
    return {"tokens_per_s": tps, "losses": [round(r["loss"], 4) for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out/gpu")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--max-words", type=int, default=600)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--eval-n", type=int, default=128, help="prompts for the eval generation check (0 skips)")
    ap.add_argument("--eval-new-tokens", type=int, default=32)
    ap.add_argument("--variants", default="plain,verifily,verifily+packing,verifily+packing+compile")
    args = ap.parse_args()
    import torch

    global DEVICE
    DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    if DEVICE == "cpu":
        torch.cuda.synchronize = lambda: None  # type: ignore[assignment]  # smoke run without a GPU
        torch.cuda.reset_peak_memory_stats = lambda: None  # type: ignore[assignment]
        torch.cuda.max_memory_allocated = lambda: 0  # type: ignore[assignment]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    model_dir, n_params = build_model(out / "model", args.layers, args.hidden)
    manifest = build_dataset(out / "datasets", rows=args.steps * args.batch + 64, max_words=args.max_words)
    levers = {
        "verifily": {},
        "verifily+packing": {"packing": True},
        "verifily+packing+compile": {"packing": True, "compile": True},
        "verifily+compile": {"compile": True},
        "verifily+packing+flex": {"packing": True, "attention": "flex_attention"},
    }
    results = {"gpu": gpu, "params": n_params, "torch": torch.__version__, "args": vars(args), "variants": {}}
    runs_of: dict[str, Path] = {}
    for name in args.variants.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if name == "plain":
            log = out / "plain_log.jsonl"
            log.unlink(missing_ok=True)  # LogCallback appends: never mix in an earlier run's windows
            plain(model_dir, manifest, args, log)
        else:
            try:
                log = ours(model_dir, manifest, args, out, name.replace("+", "_"), levers[name])
            except Exception as e:  # noqa: BLE001 - a lever that fails on this stack is a result, not a crash
                results["variants"][name] = {"error": f"{type(e).__name__}: {e}"[:400]}
                print(name, "failed:", results["variants"][name]["error"], flush=True)
                continue
            runs_of[name] = log.parent
        r = summarize(log)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        r["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if peak and r["tokens_per_s"]:
            r["mfu_6n"] = round(6 * n_params * r["tokens_per_s"] / peak, 3)
            r["mfu_4n"] = round(4 * n_params * r["tokens_per_s"] / peak, 3)
        results["variants"][name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k != "losses"}), flush=True)
    base = results["variants"].get("plain", {}).get("tokens_per_s")
    for r in results["variants"].values():
        if base and r.get("tokens_per_s") and "error" not in r:
            r["speedup_vs_plain"] = round(r["tokens_per_s"] / base, 2)
    print(f"{'variant':28} {'tok/s':>9} {'x plain':>8} {'MFU 6N':>7} {'peak GiB':>9}  losses")
    for name, r in results["variants"].items():
        if "error" in r:
            continue
        print(
            f"{name:28} {r['tokens_per_s'] or 0:9.0f} {r.get('speedup_vs_plain', 0):8.2f} "
            f"{r.get('mfu_6n', 0):7.3f} {r['peak_mem_gib']:9.2f}  {r['losses']}"
        )
    if "verifily" in runs_of and args.eval_n:
        results["eval_generation"] = eval_generation(
            model_dir, runs_of["verifily"], manifest, args.eval_n, 32, args.eval_new_tokens
        )
        print("eval generation:", json.dumps(results["eval_generation"]))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
