"""`task: dpo` (train/dpo.py, evaluate/preference.py) on the tiny llama: TRL's DPOTrainer with LoRA against the base
model with the adapter disabled (no second model), on a preference that is easy to learn (the chosen responses say
"yes yes", the rejected ones "no no"). Trained against a `max_steps: 0` baseline of the same model, held-out
preference accuracy and reward margin rise, significantly, through `compare`; the log-ratios in predictions.jsonl
equal ones computed here with plain forward passes; pairs whose chosen equals rejected are counted and left out; a
row missing a field is one clear error (exit 2)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import datasets
import numpy as np
import pytest

from tests.builders import GENERATED, write_config, write_dataset
from tests.paths import DEMO_ROOT
from tests.tiny_models import build_tokenizer, make_tiny_llama
from verifily_action.evaluate import metrics
from verifily_action.train import data as D
from verifily_action.train import dpo as T

pytestmark = pytest.mark.integration

THINGS = ["cat", "dog", "mat", "food", "movie", "day", "sun", "tree", "book", "song"]
BETA = 0.1
COLS = ("prompt_ids", "chosen_ids", "rejected_ids")


def pairs(n: int, prefix: str, seed: int) -> list[dict]:
    """Prompts about a thing; chosen answers "yes yes …", rejected ones "no no …" (about another thing)."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        a, b = r.sample(THINGS, 2)
        out.append(
            {
                "id": f"{prefix}{i}",
                "prompt": f"{prefix}{i}: the {a}?",
                "chosen": f"yes yes the {a} is good",
                "rejected": f"no no the {b} was bad",
                "tags": {"source": "odd" if i % 2 else "even"},
            }
        )
    return out


def same(i: str) -> dict:
    return {"id": i, "prompt": f"{i}: say it", "chosen": "the same", "rejected": "the same", "tags": {"source": "odd"}}


# ---------------------------------------------------------------- no model


def test_pairs_are_encoded_as_prompt_then_response_and_identical_pairs_left_out():
    tok = build_tokenizer("llama")
    rows = datasets.Dataset.from_list(pairs(3, "t", 0) + [same("s1")])
    enc = T.encode_pairs(rows, tok, 64)
    assert len(enc.columns["prompt_ids"]) == 3 and enc.stats.rows == 4
    assert enc.notes == ["1 of 4 rows have chosen equal to rejected: left out (nothing to prefer)"]
    first = rows[0]
    prompt = tok(D.SFT_TEMPLATE.format(prompt=first["prompt"]))["input_ids"]  # sft's prompt, with BOS
    assert enc.columns["prompt_ids"][0] == prompt
    assert enc.columns["chosen_ids"][0] == tok(first["chosen"] + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert enc.columns["rejected_ids"][0][-1] == tok.eos_token_id
    # a pair longer than max_length keeps its start: the responses are cut to the room the prompt leaves
    limit = max(map(len, enc.columns["prompt_ids"])) + 2
    short = T.encode_pairs(rows, tok, limit)
    kept = list(zip(*(short.columns[k] for k in COLS), strict=True))
    assert len(kept) == 3 and all(len(p) + len(c) <= limit and len(p) + len(r) <= limit for p, c, r in kept)
    cols = short.columns
    assert [c[:2] for c in cols["chosen_ids"]] == [c[:2] for c in enc.columns["chosen_ids"]]  # the start is kept
    assert short.stats.truncated == 3 and "were cut" in short.notes[1]
    # a prompt that fills max_length leaves nothing to compare: the pair is left out, counted
    none = T.encode_pairs(rows, tok, 8)
    assert none.columns["input_ids"] == [] and none.stats.dropped == 3


def test_dpo_scores_come_from_the_margins():
    scores = metrics.per_example_scores("dpo", [], [], None, None, [0.5, -0.2, 0.0, 1.5])
    assert scores["preference_accuracy"].tolist() == [1.0, 0.0, 0.0, 1.0]  # a margin of 0 prefers nothing
    assert metrics.from_scores(["preference_accuracy", "reward_margin"], scores) == pytest.approx(
        {"preference_accuracy": 0.5, "reward_margin": 0.45}
    )
    assert metrics.DIRECTIONS["preference_accuracy"] == metrics.DIRECTIONS["reward_margin"] == "higher"
    assert metrics.metrics_for("dpo") == ["preference_accuracy", "reward_margin"]


def test_data_checks_count_identical_pairs_and_a_missing_field_is_one_clear_error(cli, tmp_path):
    from verifily_action.datasets import check_data, load_manifest

    rows = pairs(4, "t", 0) + [same("s1"), same("s2")]
    manifest = write_dataset(tmp_path, "pref", "v1", {"train": rows, "eval": pairs(2, "e", 1)}, task="dpo", **GENERATED)
    report = check_data(load_manifest(manifest))
    assert report.identical_pairs == {"train": 2, "eval": 0} and report.findings == 0  # a note, not a finding
    assert [(f.check, f.line) for f in report.examples if f.check == "identical_pair"] == [
        ("identical_pair", 5),
        ("identical_pair", 6),
    ]
    assert "train: 2 rows with chosen equal to rejected (dpo leaves them out)" in report.summary_lines()

    del rows[2]["chosen"]
    write_dataset(tmp_path, "bad", "v1", {"train": rows, "eval": pairs(2, "e", 1)}, task="dpo", **GENERATED)
    out = cli("dataset", "verify", "bad@v1", "--datasets-root", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "train.jsonl:3" in out.stderr and "missing field 'chosen' (chosen)" in out.stderr, out.stderr


def test_dpo_config_carries_the_runs_training_arguments(tmp_path):
    """DPOConfig is the run's TrainingArguments (the one mapping of `training:`) plus beta; TRL's own defaults (bf16,
    gradient checkpointing, its learning rate, truncation) do not leak in."""
    import dataclasses

    from verifily_action.config import load_config
    from verifily_action.train.trainer import training_arguments

    training = {"warmup_ratio": 0.1, "scheduler": "cosine", "max_steps": 7, "learning_rate": 0.001, "dpo_beta": 0.3}
    cfg = load_config(write_config(tmp_path / "t.yaml", task="dpo", model="m", dataset="d@v1", training=training))
    base = training_arguments(cfg, tmp_path, "fp32", "cpu")
    dpo = T.dpo_config(cfg, tmp_path, "fp32", "cpu")
    for f in dataclasses.fields(base):
        if f.init:
            assert str(getattr(dpo, f.name)) == str(getattr(base, f.name)), f.name
    assert dpo.beta == 0.3 and dpo.max_length is None and not dpo.bf16 and not dpo.gradient_checkpointing
    assert dpo.learning_rate == 0.001 and dpo.max_steps == 7 and not dpo.precompute_ref_log_probs


# ---------------------------------------------------------------- the AlpacaEval preference pairs


def test_alpaca_pref_is_what_make_preference_builds_gpt4_chosen(shared_data, tmp_path):
    """examples/datasets/alpaca_pref is the script's output, byte for byte; each row pairs GPT-4's output (chosen)
    with text-davinci-003's (rejected) for the same instruction, read here independently of the script."""
    import subprocess
    import sys

    script = DEMO_ROOT / "make_preference.py"
    done = subprocess.run([sys.executable, str(script), str(shared_data), "--out", str(tmp_path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    committed = DEMO_ROOT / "alpaca_pref" / "v1"
    for name in ("manifest.yaml", "train.jsonl", "eval.jsonl", "LICENSE"):
        assert (tmp_path / "alpaca_pref" / "v1" / name).read_bytes() == (committed / name).read_bytes(), name
    src = shared_data / "preference" / "alpaca_eval"
    gpt4 = json.loads((src / "gpt4_model_outputs.json").read_text(encoding="utf-8"))
    davinci = json.loads((src / "text_davinci_003_model_outputs.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for s in ("train", "eval") for x in (committed / f"{s}.jsonl").read_text().splitlines()]
    assert len(rows) == 805 and len({r["id"] for r in rows}) == 805
    for r in rows:
        i = int(r["id"].split("-")[1])
        assert r["prompt"] == gpt4[i]["instruction"] == davinci[i]["instruction"]
        assert r["chosen"] == gpt4[i]["output"] and r["rejected"] == davinci[i]["output"]
        assert r["tags"] == {"dataset": gpt4[i]["dataset"]}
    assert sum(r["chosen"] == r["rejected"] for r in rows) == 10


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny llama, a preference dataset (one identical pair in each split) and two evaluated runs: `base`
    (max_steps 0: the adapter as initialised) and `dpo` (trained)."""
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    d = tmp_path_factory.mktemp("dpo")
    model = make_tiny_llama(d / "llama")
    root = d / "datasets"
    evals = pairs(20, "e", 1) + [same("e-same")]
    write_dataset(root, "pref", "v1", {"train": pairs(32, "t", 0) + [same("t-same")], "eval": evals}, task="dpo",
                  **GENERATED)  # fmt: skip
    runs = {}
    for name, steps in (("base", 0), ("dpo", 12)):
        cfg = write_config(
            d / f"{name}.yaml",
            task="dpo",
            model=str(model),
            dataset="pref@v1",
            datasets_root=str(root),
            output_dir=str(d / "runs"),
            run_name=name,
            training={"max_length": 80, "max_steps": steps, "batch_size": 8, "learning_rate": 0.01, "dpo_beta": BETA},
            eval={"slice_by": ["source"], "min_slice_size": 2},
        )
        runs[name] = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
        evaluate_run(runs[name], EvalOptions())
    return {"dir": d, "model": model, "root": root, "runs": runs, "evals": evals}


def _results(run: Path) -> tuple[dict, list[dict]]:
    folder = run / "eval" / "pref@v1-eval"
    rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    return json.loads((folder / "eval_results.json").read_text()), rows


def test_training_raises_preference_accuracy_and_margin_over_the_baseline_in_compare(cli, world):
    base, trained = world["runs"]["base"], world["runs"]["dpo"]
    results, rows = _results(trained)
    assert results["task"] == "dpo" and results["metrics"] == ["preference_accuracy", "reward_margin"]
    assert results["directions"] == {"preference_accuracy": "higher", "reward_margin": "higher"}
    acc, margin = results["overall"]["preference_accuracy"], results["overall"]["reward_margin"]
    assert acc["value"] == pytest.approx(np.mean([r["correct"] for r in rows]))
    assert margin["value"] == pytest.approx(np.mean([r["margin"] for r in rows]))
    assert margin["ci_low"] <= margin["value"] <= margin["ci_high"]
    for s in results["slices"]:  # per slice, with intervals
        sub = [r for r in rows if r["tags"]["source"] == s["key"]["source"]]
        m = s["metrics"]["reward_margin"]
        assert s["n"] == len(sub) and m["value"] == pytest.approx(np.mean([r["margin"] for r in sub]))
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
    assert {s["key"]["source"] for s in results["slices"]} == {"odd", "even"}

    out = cli("compare", "--runs", f"{base},{trained}", "--format", "json", "--no-config-gates")
    assert out.returncode == 0, out.stdout + out.stderr
    comparison = json.loads(out.stdout)
    assert comparison["task"] == "dpo" and comparison["pairing"][0]["paired"] is True
    assert comparison["directions"] == {"preference_accuracy": "higher", "reward_margin": "higher"}
    found = {}
    for metric in ("preference_accuracy", "reward_margin"):
        row = next(r for r in comparison["rows"] if r["slice"] == {} and r["metric"] == metric)
        before, after = (v["value"] for v in row["values"])
        delta = row["deltas"][0]
        assert before == 0.0  # the baseline: policy = reference, every margin exactly 0 (no pair preferred)
        assert after == pytest.approx(results["overall"][metric]["value"], rel=1e-9)
        assert delta["method"] == "paired" and delta["delta"] > 0, delta
        assert delta["significant"] and delta["improved"], json.dumps(delta)
        found[metric] = (before, after)
    assert found["preference_accuracy"][1] >= 0.9 and found["reward_margin"][1] > 0.1, found
    # the margin is not a rate: its change is shown in its own units, not in points
    text = cli("compare", "--runs", f"{base},{trained}", "--no-config-gates").stdout
    line = next(x for x in text.splitlines() if x.startswith("reward margin overall improved: 0.000 → "))
    assert "pts" not in line and "preference accuracy overall improved: 0.00 → " in text, text
    print(f"\nbaseline vs trained (held out, n={results['n']}): {found}")


def test_the_baseline_reference_is_the_base_every_log_ratio_exactly_zero(world):
    _, rows = _results(world["runs"]["base"])
    assert rows and all(r["chosen_logratio"] == r["rejected_logratio"] == r["margin"] == 0.0 for r in rows)
    assert all(r["logp_chosen"] == r["ref_logp_chosen"] and r["correct"] is False for r in rows)
    assert not (world["runs"]["dpo"] / "adapter" / "ref").exists()  # only the trained adapter is saved


def test_log_ratios_equal_plain_forward_passes_of_policy_and_base(world):
    """The policy: a fresh base + the run's adapter (merged); the reference: a fresh, bare base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = world["runs"]["dpo"]
    tok = AutoTokenizer.from_pretrained(str(world["model"]))
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(world["model"])), str(run / "adapter"))
    policy = policy.merge_and_unload().eval()
    ref = AutoModelForCausalLM.from_pretrained(str(world["model"])).eval()

    def logp(model, prompt: str, response: str) -> float:
        p = tok(D.SFT_TEMPLATE.format(prompt=prompt))["input_ids"]
        r = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + r])).logits[0].log_softmax(-1)
        return sum(float(logits[len(p) + j - 1, t]) for j, t in enumerate(r))

    _, rows = _results(run)
    by_id = {e["id"]: e for e in world["evals"]}
    for row in rows[:8]:
        e = by_id[row["id"]]
        lr_c = logp(policy, e["prompt"], e["chosen"]) - logp(ref, e["prompt"], e["chosen"])
        lr_r = logp(policy, e["prompt"], e["rejected"]) - logp(ref, e["prompt"], e["rejected"])
        assert row["chosen_logratio"] == pytest.approx(lr_c, abs=2e-3)
        assert row["rejected_logratio"] == pytest.approx(lr_r, abs=2e-3)
        assert row["margin"] == pytest.approx(BETA * (lr_c - lr_r), abs=5e-4)
        assert row["correct"] == (row["margin"] > 0)
        assert row["loss"] == pytest.approx(math.log1p(math.exp(-row["margin"])))


def test_identical_pairs_are_counted_and_left_out(world):
    meta = json.loads((world["runs"]["dpo"] / "run_meta.json").read_text())
    assert meta["data_report"]["identical_pairs"] == {"train": 1, "eval": 1}
    assert "1 of 33 rows have chosen equal to rejected: left out (nothing to prefer)" in meta["notes"]
    results, rows = _results(world["runs"]["dpo"])
    assert results["n"] == len(rows) == 20 and "e-same" not in {r["id"] for r in rows}
    assert set(rows[0]) >= {"id", "tags", "chosen_logratio", "rejected_logratio", "margin", "correct"}


def test_only_one_base_model_is_loaded_while_training(world, tmp_path, monkeypatch):
    """TRL would load a second model as the reference if it were not given a PEFT model; count the loads."""
    from transformers import PreTrainedModel

    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    loads = []
    original = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]

    def counting(cls, *args, **kwargs):
        loads.append(cls.__name__)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(counting))
    cfg = write_config(
        tmp_path / "one.yaml",
        task="dpo",
        model=str(world["model"]),
        dataset="pref@v1",
        datasets_root=str(world["root"]),
        output_dir=str(tmp_path / "runs"),
        training={"max_length": 80, "max_steps": 1, "batch_size": 4},
    )
    run = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
    assert loads == ["LlamaForCausalLM"], loads
    assert json.loads((run / "run_meta.json").read_text())["metrics"]["global_step"] == 1


def test_a_row_missing_a_field_is_one_clear_error(cli, world, tmp_path):
    rows = pairs(4, "t", 0)
    del rows[2]["rejected"]
    root = tmp_path / "datasets"
    write_dataset(root, "bad", "v1", {"train": rows, "eval": pairs(2, "e", 1)}, task="dpo", **GENERATED)
    cfg = write_config(
        tmp_path / "train.yaml",
        task="dpo",
        model=str(world["model"]),
        dataset="bad@v1",
        datasets_root=str(root),
        output_dir=str(tmp_path / "runs"),
        training={"max_length": 80, "max_steps": 1},
    )
    out = cli("train", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "train.jsonl:3" in out.stderr and "missing field 'rejected' (rejected)" in out.stderr, out.stderr


def test_a_dpo_run_verifies(cli, world):
    out = cli("reproduce", "--verify-only", str(world["runs"]["dpo"]))
    assert out.returncode == 0, out.stdout + out.stderr


def test_packing_is_refused_for_dpo(cli, world, tmp_path):
    cfg = write_config(tmp_path / "t.yaml", task="dpo", model=str(world["model"]), dataset="pref@v1",
                       datasets_root=str(world["root"]), training={"packing": True})  # fmt: skip
    out = cli("validate", str(cfg))
    assert out.returncode == 2 and "packing works for task sft only, not dpo" in out.stderr, out.stdout + out.stderr


def test_an_encoder_decoder_is_refused_before_anything_is_written(cli, world, tmp_path):
    from tests.tiny_models import make_tiny_t5

    cfg = write_config(tmp_path / "t.yaml", task="dpo", model=str(make_tiny_t5(tmp_path / "t5")), dataset="pref@v1",
                       datasets_root=str(world["root"]), output_dir=str(tmp_path / "runs"),
                       training={"max_length": 80, "max_steps": 1})  # fmt: skip
    out = cli("train", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "task dpo needs a decoder-only causal LM" in out.stderr and "encoder-decoder" in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
