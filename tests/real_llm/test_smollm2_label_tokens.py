"""Classification through label tokens (`classifier: label_tokens`) on SmolLM2-135M-Instruct: the instruct model
already reads sentiment zero-shot through the verbalizers " negative" / " positive" (its `max_steps: 0` baseline),
a few LoRA steps with the loss on the label tokens only make it better, per source (human reviews, SuperGen's
generated ones); a classification head trained the same steps on the same model starts from nothing and does worse —
when to use which (README)."""

from __future__ import annotations

import html
import json
import random

import pytest

from tests.builders import write_dataset
from tests.real_llm.runs import compared, isolated, overall_deltas, print_table, train_and_eval

pytestmark = pytest.mark.llm

N_TRAIN, N_EVAL = 64, 64  # per split, half human, half synthetic
LABELS = ("negative", "positive")
TRAINING = {"max_steps": 8, "batch_size": 8, "learning_rate": 0.001, "max_length": 64}
EVAL = {"slice_by": ["source"], "batch_size": 32}


def _sentiment_rows(shared) -> list[dict]:
    """Human rows (UCI: IMDb, Amazon, Yelp reviews) and synthetic ones (SuperGen), labels by name, tagged by source."""
    rows = []
    for origin in ("imdb", "amazon_cells", "yelp"):
        lines = (shared / f"sentiment/uci_sentiment/{origin}_labelled.txt").read_text().splitlines()
        for i, (text, label) in enumerate(line.rsplit("\t", 1) for line in lines if "\t" in line):
            rows.append({"id": f"{origin}-{i}", "text": text.strip(), "label": LABELS[int(label)],
                         "tags": {"source": "human"}})  # fmt: skip
    for i, r in enumerate(json.loads((shared / "sentiment/supergen_sst2/train.json").read_text())):
        rows.append({"id": f"supergen-{i}", "text": html.unescape(r["text"]).strip(), "label": LABELS[int(r["label"])],
                     "tags": {"source": "synthetic"}})  # fmt: skip
    return [r for r in rows if 3 <= len(r["text"].split()) <= 40]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_gguf, model_cache, shared_data):
    """base (label tokens, max_steps 0), tokens (label tokens, trained), head (a classification head, trained)."""
    rows = _sentiment_rows(shared_data)
    random.Random(0).shuffle(rows)
    human = [r for r in rows if r["tags"]["source"] == "human"]
    synthetic = [r for r in rows if r["tags"]["source"] == "synthetic"]
    half_t, half_e = N_TRAIN // 2, N_EVAL // 2
    splits = {
        "train": human[:half_t] + synthetic[:half_t],
        "eval": human[half_t : half_t + half_e] + synthetic[half_t : half_t + half_e],
    }
    root = tmp_path_factory.mktemp("sentiment")
    write_dataset(root / "datasets", "senti", "v1", splits, task="classification", tag_keys=("source",),
                  license="CC BY 4.0 (UCI Sentiment Labelled Sentences) and Apache-2.0 (SuperGen)")  # fmt: skip
    out = {}
    with isolated(tmp_path_factory, model_cache):
        for name, classifier, training in (
            ("base", "label_tokens", {**TRAINING, "max_steps": 0}),
            ("tokens", "label_tokens", TRAINING),
            ("head", "head", TRAINING),
        ):
            out[name] = train_and_eval(root, name, task="classification", model=smollm2_gguf, dataset="senti@v1",
                                       classifier=classifier, lora={"r": 8, "alpha": 16}, training=training,
                                       eval=EVAL)  # fmt: skip
    return out


def _accuracy(run) -> dict:
    """The run's overall accuracy: {value, ci_low, ci_high}."""
    (f,) = run.glob("eval/*/eval_results.json")
    return json.loads(f.read_text())["overall"]["accuracy"]


def test_label_tokens_read_sentiment_zero_shot_and_learn_it_better(cli, runs):
    report = compared(runs["base"], runs["tokens"])
    overall = overall_deltas(report)
    print_table(report, "accuracy")
    print_table(report, "macro_f1")
    assert _accuracy(runs["base"])["ci_low"] > 0.5  # zero-shot: the pretrained LM head already reads sentiment
    assert overall["accuracy"]["delta"] > 0 and overall["accuracy"]["significant"], overall["accuracy"]


def test_the_head_trained_the_same_steps_does_worse(cli, runs):
    report = compared(runs["head"], runs["tokens"])
    overall = overall_deltas(report)
    print_table(report, "accuracy")
    assert overall["accuracy"]["delta"] > 0 and overall["accuracy"]["significant"], overall["accuracy"]
