"""`task: pretrain` (train/pretrain.py, evaluate/pretrain.py) on the tiny llama: documents packed into max_length
blocks with nothing dropped, held-out perplexity lowered by training against the untrained base (scored by the
same window code on the bare base model), per-slice perplexity with intervals, one predictions.jsonl line per
document, two runs compared document by document with lower perplexity better, and bad input refused with one
clear error (exit 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import datasets
import pytest

from tests.builders import GENERATED, write_config, write_dataset
from tests.tiny_models import build_tokenizer, make_tiny_llama, make_tiny_t5
from verifily_action.evaluate import pretrain as E
from verifily_action.train import data as D
from verifily_action.train import pretrain as P

pytestmark = pytest.mark.integration

SENTENCES = [
    "The cat sat on the mat all day long.",
    "The movie was great and the acting was wonderful.",
    "The food was terrible and the service was slow.",
]


def docs(n: int, prefix: str, offset: int = 0) -> list[dict]:
    """Repetitive documents (1 to 4 sentences of a tiny corpus) the tiny model learns in a few dozen steps."""
    out = []
    for i in range(n):
        k = 1 + (i + offset) % 4
        text = " ".join(SENTENCES[(i + offset + j) % 3] for j in range(k))
        out.append({"id": f"{prefix}{i}", "text": text, "tags": {"source": "news" if i % 2 else "books"}})
    return out


# ---------------------------------------------------------------- packing (no model)


def test_packing_keeps_every_token_in_max_length_blocks_with_eos_between_documents():
    tok = build_tokenizer("llama")
    rows = datasets.Dataset.from_list(docs(9, "d"))
    enc = D.encode("pretrain", rows, tok, 16)
    one_by_one = [tok(r["text"])["input_ids"] + [tok.eos_token_id] for r in rows]
    stream = [t for d in one_by_one for t in d]
    blocks = enc.columns["input_ids"]

    assert [t for b in blocks for t in b] == stream  # every token, in order, nothing dropped or added
    assert all(len(b) == 16 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 16  # the partial last block is kept
    assert len(blocks) == math.ceil(len(stream) / 16)
    assert stream.count(tok.eos_token_id) == 9 and all(d[-1] == tok.eos_token_id for d in one_by_one)
    assert enc.columns["labels"] == blocks and enc.columns["length"] == [len(b) for b in blocks]
    stats = enc.stats.to_dict()
    assert stats == {
        "rows": 9, "truncated": 0, "dropped": 0, "tokens": len(stream), "max_length": 16,
        "longest": max(map(len, one_by_one)), "blocks": len(blocks),
    }  # fmt: skip
    assert enc.notes == [
        f"pretrain: 9 documents, {len(stream)} tokens (EOS after each) packed into {len(blocks)} blocks of "
        f"max_length 16 (the last holds {len(blocks[-1])}); no token truncated"
    ]
    assert "blocks" not in D.encode("sft", rows, tok, 16).stats.to_dict()  # other tasks' stats as they were
    assert P.pack([[1, 2, 3], [4, 5], [6]], 2) == [[1, 2], [3, 4], [5, 6]]
    assert P.pack([[1, 2, 3], [4, 5]], 4) == [[1, 2, 3, 4], [5]] and P.pack([], 4) == []


def test_windows_score_every_token_but_the_first_exactly_once():
    for n in range(2, 40):
        for limit in (8, 9, 16):
            spans = E.windows(list(range(n)), limit)
            targets = [t for s, e in spans for t in range(s + 1, e)]
            assert targets == list(range(1, n)), (n, limit)
            assert all(e - s <= limit for s, e in spans)


def test_loss_and_perplexity_are_token_weighted_for_pretrain_only():
    import numpy as np

    from verifily_action.compare import paired
    from verifily_action.evaluate import bootstrap, metrics

    losses, tokens = [1.0, 2.0, 4.0], [1, 3, 4]
    weighted = (1 * 1 + 2 * 3 + 4 * 4) / 8
    scores = metrics.per_example_scores("pretrain", [""] * 3, [""] * 3, losses, tokens)
    assert metrics.from_scores(["loss", "perplexity"], scores) == pytest.approx(
        {"loss": weighted, "perplexity": math.exp(weighted)}
    )
    out = paired.Outcomes(scores, ["1", "3", "4"], [""] * 3)
    assert paired.point("perplexity", out) == pytest.approx(math.exp(weighted))
    # every bootstrap resample takes the same ratio: its values stay within the documents' own losses
    stats = bootstrap.resample_stats(["loss"], scores, resamples=200)["loss"]
    assert stats.min() >= 1.0 and stats.max() <= 4.0 and abs(np.median(stats) - weighted) < 0.6
    # the paired test swaps a document's loss together with its tokens: swapping every document swaps the runs
    other = paired.Outcomes(metrics.per_example_scores("pretrain", [""] * 3, [""] * 3, [0.5, 1.0, 1.0], tokens), [], [])
    stat = paired._Stat("loss", [out, other])
    ma, mb = stat.rows_mixed(np.ones((1, 3), dtype=bool))
    assert ma[0] == pytest.approx((0.5 + 3 + 4) / 8) and mb[0] == pytest.approx(weighted)
    plain = metrics.per_example_scores("sft", ["a"] * 3, ["a"] * 3, losses)  # other tasks: a mean per example
    assert metrics.from_scores(["loss"], plain)["loss"] == pytest.approx(7 / 3)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny llama, a pretrain dataset and two runs: `short` (1 step at a low rate: about the base model) and
    `long` (25 steps at a high rate), both evaluated."""
    from verifily_action.evaluate.runner import EvalOptions, evaluate_run
    from verifily_action.train import job
    from verifily_action.train.plan import TrainOptions

    d = tmp_path_factory.mktemp("pretrain")
    model = make_tiny_llama(d / "llama")
    root = d / "datasets"
    # one held-out document longer than max_length (32): scored over several windows
    long_doc = {"id": "long", "text": " ".join(SENTENCES * 4), "tags": {"source": "books"}}
    evals = docs(11, "e", offset=1) + [long_doc]
    write_dataset(root, "web", "v1", {"train": docs(40, "t"), "eval": evals}, task="pretrain", **GENERATED)
    runs = {}
    for name, steps, lr in (("short", 1, 1e-5), ("long", 25, 0.01)):
        cfg = write_config(
            d / f"{name}.yaml",
            task="pretrain",
            model=str(model),
            dataset="web@v1",
            datasets_root=str(root),
            output_dir=str(d / "runs"),
            run_name=name,
            training={"max_length": 32, "max_steps": steps, "batch_size": 8, "learning_rate": lr, "logging_steps": 5},
            eval={"slice_by": ["source"], "min_slice_size": 2},
        )
        runs[name] = job.train(TrainOptions(config=cfg), echo=lambda s: None).run_dir
        evaluate_run(runs[name], EvalOptions())
    return {"dir": d, "model": model, "root": root, "runs": runs, "eval_docs": evals}


def _results(run: Path) -> tuple[dict, list[dict]]:
    folder = run / "eval" / "web@v1-eval"
    rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    return json.loads((folder / "eval_results.json").read_text()), rows


def _base_perplexity(model: Path, texts: list[str], max_length: int) -> float:
    """The untrained base's token-weighted perplexity, through the same window scoring on the bare model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verifily_action.evaluate.inference import LoadedModel

    base = AutoModelForCausalLM.from_pretrained(str(model)).eval()
    out = E.score_documents(LoadedModel("pretrain", base, AutoTokenizer.from_pretrained(str(model)), "cpu"), texts, 8)
    out_max = E.score_documents(
        LoadedModel("pretrain", base, AutoTokenizer.from_pretrained(str(model)), "cpu", max_length=max_length), texts, 8
    )
    # the windows change nothing but the context: a long document scores about the same through short windows
    assert out.extra["tokens"] == out_max.extra["tokens"]
    tokens = out_max.extra["tokens"]
    return math.exp(sum(x * n for x, n in zip(out_max.losses, tokens, strict=True)) / sum(tokens))


def test_training_lowers_held_out_perplexity_below_the_base(world):
    meta = json.loads((world["runs"]["long"] / "run_meta.json").read_text())
    stats = meta["truncation"]["train"]
    assert stats["truncated"] == stats["dropped"] == 0 and stats["rows"] == 40
    assert stats["blocks"] == math.ceil(stats["tokens"] / 32)
    assert any(n.startswith("pretrain: 40 documents") for n in meta["notes"])

    results, rows = _results(world["runs"]["long"])
    assert results["task"] == "pretrain" and results["metrics"] == ["perplexity", "loss"]
    assert results["directions"] == {"perplexity": "lower", "loss": "lower"}
    ppl = results["overall"]["perplexity"]
    assert ppl["ci_low"] <= ppl["value"] <= ppl["ci_high"]
    # perplexity = exp(token-weighted mean of the documents' losses), as written in predictions.jsonl
    weighted = sum(r["loss"] * r["tokens"] for r in rows) / sum(r["tokens"] for r in rows)
    assert ppl["value"] == pytest.approx(math.exp(weighted), rel=1e-9)
    assert results["overall"]["loss"]["value"] == pytest.approx(weighted, rel=1e-9)

    base = _base_perplexity(world["model"], [r["text"] for r in world["eval_docs"]], 32)
    short = _results(world["runs"]["short"])[0]["overall"]["perplexity"]["value"]
    assert short == pytest.approx(base, rel=0.02)  # 1 step at 1e-5: still the base model, scored the same way
    # learned the corpus (about 411 -> 248: the tiny model's frozen, small-init output head bounds how far it can go)
    assert ppl["ci_high"] < 0.7 * base, (ppl, base)


def test_per_slice_perplexity_and_one_prediction_line_per_document(world):
    results, rows = _results(world["runs"]["long"])
    by_key = {s["key"]["source"]: s for s in results["slices"]}
    assert set(by_key) == {"books", "news"}
    for value, s in by_key.items():
        ppl = s["metrics"]["perplexity"]
        assert ppl["ci_low"] <= ppl["value"] <= ppl["ci_high"] and ppl["ci_low"] < ppl["ci_high"]
        sub = [r for r in rows if r["tags"]["source"] == value]
        assert s["n"] == len(sub)
        expect = math.exp(sum(r["loss"] * r["tokens"] for r in sub) / sum(r["tokens"] for r in sub))
        assert ppl["value"] == pytest.approx(expect, rel=1e-9)

    assert [r["id"] for r in rows] == [d["id"] for d in world["eval_docs"]]
    assert all(set(r) == {"id", "tags", "tokens", "loss", "score"} for r in rows)
    tok = build_tokenizer("llama")  # the tiny llama's tokenizer, built the same way
    long_row = next(r for r in rows if r["id"] == "long")
    long_len = len(tok(world["eval_docs"][-1]["text"])["input_ids"]) + 1  # + EOS
    assert long_len > 32 and long_row["tokens"] == long_len - 1  # every token but the first scored: no truncation
    assert results["truncation"]["truncated"] == 0 and results["truncation"]["longest"] == long_len
    assert results["failure_breakdown"] == []


def test_compare_pairs_two_pretrain_runs_and_lower_perplexity_is_better(cli, world):
    short, long = world["runs"]["short"], world["runs"]["long"]
    out = cli("compare", "--runs", f"{short},{long}", "--format", "json", "--no-config-gates")
    assert out.returncode == 0, out.stdout + out.stderr
    comparison = json.loads(out.stdout)
    assert comparison["task"] == "pretrain" and comparison["pairing"][0]["paired"] is True
    assert comparison["directions"]["perplexity"] == "lower"
    row = next(r for r in comparison["rows"] if r["slice"] == {} and r["metric"] == "perplexity")
    delta = row["deltas"][0]
    before, after = (v["value"] for v in row["values"])
    # compare recomputes each run's perplexity from predictions.jsonl, token-weighted as eval did
    assert before == pytest.approx(_results(short)[0]["overall"]["perplexity"]["value"], rel=1e-9)
    assert after == pytest.approx(_results(long)[0]["overall"]["perplexity"]["value"], rel=1e-9)
    assert delta["delta"] == pytest.approx(after - before) and delta["delta"] < 0
    assert delta["method"] == "paired" and delta["test"] == "paired_permutation"
    assert delta["ci_low"] <= delta["delta"] <= delta["ci_high"] < 0
    assert delta["significant"] is True and delta["improved"] is True
    # the reverse comparison is a significant regression, which a gate catches (exit 1)
    gate = cli("compare", "--runs", f"{long},{short}", "--fail-on", "perplexity>0:significant", "--no-config-gates")
    assert gate.returncode == 1, gate.stdout + gate.stderr


def test_pretrain_run_verifies_and_the_dry_run_counts_blocks(cli, world):
    out = cli("reproduce", "--verify-only", str(world["runs"]["long"]))
    assert out.returncode == 0, out.stdout + out.stderr
    blocks = json.loads((world["runs"]["long"] / "run_meta.json").read_text())["truncation"]["train"]["blocks"]
    dry = cli("train", "--config", str(world["dir"] / "long.yaml"), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"split train: 40 documents, packed into {blocks} blocks of max_length\n" in dry.stdout


# ---------------------------------------------------------------- bad input


def _train(cli, world, tmp: Path, name: str, train_rows: list[dict] | None = None, model: Path | None = None):
    root = tmp / "datasets"
    rows = train_rows if train_rows is not None else docs(4, "t")
    write_dataset(root, "bad", "v1", {"train": rows, "eval": docs(2, "e")}, task="pretrain", **GENERATED)
    cfg = write_config(
        tmp / "train.yaml",
        task="pretrain",
        model=str(model or world["model"]),
        dataset="bad@v1",
        datasets_root=str(root),
        output_dir=str(tmp / "runs"),
        run_name=name,
        training={"max_length": 32, "max_steps": 1},
    )
    return cli("train", "--config", str(cfg))


def test_a_document_without_text_is_one_clear_error(cli, world, tmp_path):
    rows = docs(4, "t")
    del rows[2]["text"]
    out = _train(cli, world, tmp_path, "no-text", rows)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "missing field 'text' (text)" in out.stderr and "train.jsonl:3" in out.stderr


def test_an_empty_document_is_one_clear_error(cli, world, tmp_path):
    rows = docs(4, "t")
    rows[1]["text"] = "  "
    out = _train(cli, world, tmp_path, "empty", rows)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "1 document with empty text" in out.stderr and "train.jsonl:2" in out.stderr
    assert not (tmp_path / "runs" / "empty").exists()


def test_an_encoder_decoder_or_a_classifier_is_refused(cli, world, tmp_path):
    t5 = make_tiny_t5(tmp_path / "t5")
    out = _train(cli, world, tmp_path / "a", "t5", model=t5)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "task pretrain needs a decoder-only causal LM" in out.stderr and "encoder-decoder" in out.stderr

    classifier = tmp_path / "classifier"
    shutil.copytree(world["model"], classifier)
    config = json.loads((classifier / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (classifier / "config.json").write_text(json.dumps(config))
    out = _train(cli, world, tmp_path / "b", "cls", model=classifier)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "not a causal language model (its architectures: LlamaForSequenceClassification)" in out.stderr


def test_packing_is_refused_for_pretrain(cli, tmp_path):
    cfg = write_config(tmp_path / "train.yaml", task="pretrain", model="m", dataset="d@v1", training={"packing": True})
    out = cli("validate", str(cfg))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "packing works for task sft only, not pretrain" in out.stdout + out.stderr
