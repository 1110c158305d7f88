"""Per-slice macro-F1 on many classes (issue 16, item 5): a slice averages over the labels of its own references,
equal to scikit-learn's `f1_score(labels=...)` on the subset, and every interval contains its estimate, also where
rare labels score unlike common ones and where stray predicted labels each score 0 (`all_labels`)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tests.compare_fakes import DOMAINS, intent_records
from verifily_action.evaluate import bootstrap, metrics, runner
from verifily_action.schemas import load_schema

pytestmark = pytest.mark.unit


def _score(records: list[dict], scope: str, seed: int = 0) -> dict:
    return runner.score(
        "classification",
        ["accuracy", "macro_f1"],
        records,
        slice_by=["domain", "source"],
        cross=[],
        min_slice_size=30,
        resamples=1000,
        confidence=0.95,
        seed=seed,
        slice_macro_f1=scope,
    )


def _subset(records: list[dict], key: dict[str, str]) -> tuple[list[str], list[str]]:
    rows = [r for r in records if all(r["tags"][k] == v for k, v in key.items())]
    return [r["reference"] for r in rows], [r["prediction"] for r in rows]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slice_macro_f1_is_over_the_slice_labels_and_inside_its_interval(seed):
    records = intent_records(seed=seed)
    out = _score(records, "slice_labels", seed)
    assert out["slice_macro_f1"] == "slice_labels"
    refs, preds = [r["reference"] for r in records], [r["prediction"] for r in records]
    assert out["overall"]["macro_f1"]["value"] == pytest.approx(f1_score(refs, preds, average="macro"), abs=1e-12)
    assert len(out["slices"]) == DOMAINS + 2
    for s in out["slices"]:
        sub_refs, sub_preds = _subset(records, s["key"])
        want = f1_score(sub_refs, sub_preds, labels=sorted(set(sub_refs)), average="macro", zero_division=0)
        assert s["metrics"]["macro_f1"]["value"] == pytest.approx(want, abs=1e-12), s["key"]
        for m in ("accuracy", "macro_f1"):
            iv = s["metrics"][m]
            assert iv["ci_low"] <= iv["value"] <= iv["ci_high"], (s["key"], m, iv)
            assert iv["ci_high"] > iv["ci_low"], (s["key"], m, iv)


@pytest.mark.parametrize("seed", [0, 1])
def test_all_labels_keeps_the_old_definition_and_its_interval_now_holds_it(seed):
    records = intent_records(seed=seed)
    old, new = _score(records, "all_labels", seed), _score(records, "slice_labels", seed)
    for s_old, s_new in zip(old["slices"], new["slices"], strict=True):
        sub_refs, sub_preds = _subset(records, s_old["key"])
        want = f1_score(sub_refs, sub_preds, average="macro", zero_division=0)
        iv = s_old["metrics"]["macro_f1"]
        assert iv["value"] == pytest.approx(want, abs=1e-12)
        assert iv["ci_low"] <= iv["value"] <= iv["ci_high"], (s_old["key"], iv)
        if "domain" in s_old["key"]:
            # the symptom: wrong predictions from other domains each add a label scoring 0
            accuracy = s_new["metrics"]["accuracy"]["value"]
            assert iv["value"] < 0.6 < accuracy - 0.1 < s_new["metrics"]["macro_f1"]["value"]


def test_unweighted_resamples_would_miss_the_estimate_on_this_data():
    """Why resamples weigh their labels: averaged over the labels each resample shows, unweighted, the resampled
    values leave the estimate behind on these slices (what issue 16 saw), so the tests above can fail."""
    records = intent_records(seed=0)
    missed = 0
    for key in [{"domain": f"d{d}"} for d in range(DOMAINS)] + [{"source": "synthetic"}]:
        refs, preds = _subset(records, key)
        for scope in ("all_labels", "slice_labels"):
            macro = metrics.MacroF1(refs, preds, scope)
            idx = np.random.default_rng(0).integers(0, macro.n, size=(1000, macro.n))
            plain = macro.of_codes(macro.ref[idx], macro.pred[idx], weighted=False)
            weighted = macro.rows(idx)
            low, high = np.quantile(weighted, [0.025, 0.975])
            assert low <= macro.value() <= high
            low, high = np.quantile(plain, [0.025, 0.975])
            missed += not low <= macro.value() <= high
    assert missed >= 5


def test_resample_weights_are_one_over_the_chance_to_be_there():
    rng = np.random.default_rng(3)
    refs = [f"l{i}" for i in rng.integers(0, 40, 60)]
    preds = [r if rng.random() < 0.7 else f"l{rng.integers(0, 45)}" for r in refs]
    for scope in ("slice_labels", "all_labels"):
        macro = metrics.MacroF1(refs, preds, scope)
        idx = rng.integers(0, 60, size=(20, 60))
        got = macro.rows(idx)
        for b in range(20):
            r, p = [refs[i] for i in idx[b]], [preds[i] for i in idx[b]]
            shown = sorted(set(r) if scope == "slice_labels" else set(r) | set(p))
            shown = [lab for lab in shown if lab in macro.labels]
            f1 = f1_score(r, p, labels=shown, average=None, zero_division=0)
            m = np.array(
                [
                    sum(x == lab or (scope == "all_labels" and y == lab) for x, y in zip(refs, preds, strict=True))
                    for lab in shown
                ]
            )
            weight = 1 / (1 - (1 - m / 60) ** 60)
            assert got[b] == pytest.approx(float(np.sum(f1 * weight) / np.sum(weight)), abs=1e-12)


def test_common_labels_get_the_plain_bootstrap():
    # Every label on many rows: the chance to be in a resample is 1 and nothing changes (the binary demo's case).
    rng = np.random.default_rng(4)
    refs = [["neg", "pos"][i] for i in rng.integers(0, 2, 400)]
    preds = [r if rng.random() < 0.8 else "pos" for r in refs]
    macro = metrics.MacroF1(refs, preds, "slice_labels")
    assert np.all(macro.inclusion == 1.0)
    stats = bootstrap.resample_stats(["macro_f1"], {}, refs, preds, resamples=30, seed=0, label_scope="slice_labels")
    idx = np.random.default_rng(0).integers(0, 400, size=(30, 400))
    for b in range(30):
        r, p = [refs[i] for i in idx[b]], [preds[i] for i in idx[b]]
        assert stats["macro_f1"][b] == pytest.approx(f1_score(r, p, labels=["neg", "pos"], average="macro"), abs=1e-12)


def test_eval_results_record_the_definition():
    out = _score(intent_records(rows=600), "slice_labels")
    assert out["slice_macro_f1"] == "slice_labels"
    assert load_schema("eval_results.schema.json")["properties"]["slice_macro_f1"]["enum"] == list(
        metrics.MACRO_F1_SCOPES
    )
    assert load_schema("train.schema.json")["properties"]["eval"]["properties"]["slice_macro_f1"]["enum"] == list(
        metrics.MACRO_F1_SCOPES
    )
    generation = runner.score(
        "sft",
        ["exact_match"],
        runner.build_records("sft", ["a"], [{}], ["x"], ["x"], [None]),
        slice_by=[],
        cross=[],
        min_slice_size=1,
        resamples=1000,
        confidence=0.95,
        seed=0,
    )
    assert "slice_macro_f1" not in generation
    with pytest.raises(ValueError, match="label scope"):
        metrics.macro_f1_labels(["a"], ["a"], "every_label")


def test_the_table_and_the_markdown_say_which_labels():
    from rich.console import Console

    from verifily_action.report.results import results_markdown, results_table

    out = _score(intent_records(rows=600), "slice_labels")
    results = {"eval_name": "intents@v1-eval", "run_id": "r", "task": "classification", "n": 600, "confidence": 0.95}
    results |= {"bootstrap_resamples": 1000, "metrics": ["accuracy", "macro_f1"], "directions": {}, **out}
    console = Console(record=True, width=200)
    console.print(results_table(results))
    assert "a slice's macro-F1 averages over the labels of its references" in console.export_text()
    assert "<sub>A slice's macro-F1 averages over the labels of its references.</sub>" in results_markdown(results)
    results["slice_macro_f1"] = "all_labels"
    assert "every label seen in it (references and predictions)" in results_markdown(results)
    del results["slice_macro_f1"]  # a file written before the definition was recorded says nothing
    assert "macro-F1 averages" not in results_markdown(results)
