"""The model-free half of the runner: per-example records -> overall and slice metrics with intervals."""

from __future__ import annotations

import numpy as np
import pytest

from verifily_action.evaluate import metrics, runner

pytestmark = pytest.mark.unit


def _gen_records(n=120, seed=0):
    rng = np.random.default_rng(seed)
    words = ["red", "green", "blue", "cat", "dog"]
    refs = [" ".join(rng.choice(words, 3)) for _ in range(n)]
    preds = [r if rng.random() < 0.5 else " ".join(rng.choice(words, 2)) for r in refs]
    losses = list(rng.gamma(2.0, 0.4, n))
    tags = [{"source": "human" if i % 3 else "synthetic", "lang": None if i % 10 == 0 else "en"} for i in range(n)]
    return runner.build_records("sft", [f"x{i}" for i in range(n)], tags, refs, preds, losses), refs, preds, losses


def test_overall_and_slices_match_direct_computation():
    records, refs, preds, losses = _gen_records()
    names = ["exact_match", "token_f1", "rouge_l", "loss", "perplexity"]
    out = runner.score(
        "sft",
        names,
        records,
        slice_by=["source"],
        cross=[{"source": "human", "lang": "en"}],
        min_slice_size=50,
        resamples=1000,
        confidence=0.95,
        seed=0,
    )
    want = metrics.compute("sft", names, refs, preds, losses)
    for m in names:
        iv = out["overall"][m]
        assert iv["value"] == pytest.approx(want[m], abs=1e-12)
        assert iv["ci_low"] <= iv["value"] <= iv["ci_high"]
    by_key = {tuple(s["key"].items()): s for s in out["slices"]}
    human = by_key[(("source", "human"),)]
    idx = [i for i, r in enumerate(records) if r["tags"]["source"] == "human"]
    assert human["n"] == len(idx) == 80 and not human["too_small"]
    sub = metrics.compute("sft", names, [refs[i] for i in idx], [preds[i] for i in idx], [losses[i] for i in idx])
    assert human["metrics"]["token_f1"]["value"] == pytest.approx(sub["token_f1"], abs=1e-12)
    assert by_key[(("source", "synthetic"),)]["too_small"] is True  # 40 < 50
    cross = by_key[(("source", "human"), ("lang", "en"))]
    assert cross["n"] == sum(1 for r in records if r["tags"] == {"source": "human", "lang": "en"})
    # tags without a value are written as the NONE_TAG value, so predictions.jsonl round-trips through slicing
    assert records[0]["tags"]["lang"] == "(none)"
    assert out["per_class"] is None and out["confusion_matrix"] is None
    assert {e["value"] for e in out["failure_breakdown"]} == {"human", "synthetic"}


def test_classification_records_and_intervals_are_seeded():
    refs = ["pos", "neg"] * 50
    preds = ["pos"] * 100
    tags = [{"source": "human"}] * 100
    records = runner.build_records("classification", [str(i) for i in range(100)], tags, refs, preds, [0.1] * 100)
    assert [r["correct"] for r in records[:2]] == [True, False]
    kw = {"slice_by": [], "cross": [], "min_slice_size": 30, "resamples": 1000, "confidence": 0.95}
    a = runner.score("classification", ["accuracy", "macro_f1"], records, seed=1, **kw)
    b = runner.score("classification", ["accuracy", "macro_f1"], records, seed=1, **kw)
    assert a == b
    assert a["overall"]["accuracy"]["value"] == 0.5
    assert a["confusion_matrix"] == {"labels": ["neg", "pos"], "matrix": [[0, 50], [0, 50]]}
    assert a["per_class"]["neg"]["recall"] == 0.0
