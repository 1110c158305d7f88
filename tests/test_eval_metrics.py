"""Metric equality against reference implementations (scikit-learn, rouge-score, SQuAD's official script) to 1e-9."""

from __future__ import annotations

import collections
import math
import re
import string
import subprocess
import sys

import numpy as np
import pytest
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from verifily_action.evaluate import metrics as M

pytestmark = pytest.mark.unit
TOL = 1e-9


# --- SQuAD v2.0's official evaluate-v2.0.py, transcribed verbatim (the reference for EM / token F1) ---
def _squad_normalize(s):
    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_tokens(s):
    return _squad_normalize(s).split() if s else []


def _squad_em(a_gold, a_pred):
    return int(_squad_normalize(a_gold) == _squad_normalize(a_pred))


def _squad_f1(a_gold, a_pred):
    gold_toks, pred_toks = _squad_tokens(a_gold), _squad_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _random_labels(rng, n, labels):
    return [labels[i] for i in rng.integers(0, len(labels), n)]


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    # References use a..d, predictions a..e: a label only predicted and (often) one only referenced.
    refs = _random_labels(rng, n, ["a", "b", "c", "d"])
    preds = [
        r if rng.random() < 0.6 else lab for r, lab in zip(refs, _random_labels(rng, n, list("abcde")), strict=True)
    ]
    got = M.compute("classification", ["accuracy", "macro_f1", "micro_f1"], refs, preds)
    assert abs(got["accuracy"] - skm.accuracy_score(refs, preds)) < TOL
    assert abs(got["macro_f1"] - skm.f1_score(refs, preds, average="macro", zero_division=0)) < TOL
    assert abs(got["micro_f1"] - skm.f1_score(refs, preds, average="micro", zero_division=0)) < TOL

    labels = sorted(set(refs) | set(preds))
    p, r, f, s = skm.precision_recall_fscore_support(refs, preds, labels=labels, zero_division=0)
    pc = M.per_class(refs, preds)
    assert list(pc) == labels
    for i, lab in enumerate(labels):
        assert abs(pc[lab]["precision"] - p[i]) < TOL
        assert abs(pc[lab]["recall"] - r[i]) < TOL
        assert abs(pc[lab]["f1"] - f[i]) < TOL
        assert pc[lab]["support"] == s[i]
    cm = M.confusion_matrix(refs, preds)
    assert cm["labels"] == labels
    assert cm["matrix"] == skm.confusion_matrix(refs, preds, labels=labels).tolist()


def test_macro_f1_single_class_and_all_wrong():
    assert M.compute("classification", ["macro_f1"], ["x"] * 4, ["x"] * 4)["macro_f1"] == 1.0
    refs, preds = ["a", "b", "a"], ["b", "a", "b"]
    assert M.compute("classification", ["macro_f1"], refs, preds)["macro_f1"] == skm.f1_score(
        refs, preds, average="macro", zero_division=0
    )


WORDS = ["the", "a", "cat", "Cat", "sat", "on", "mat", "dog's", "über", "naïve", "run", "running", "42", "x-ray"]
PUNCT = ["", ".", ",", "!", " ", "  ", "\n", "'", '"', "(", ")"]


def _random_text(rng, max_words=12):
    k = int(rng.integers(0, max_words))
    return "".join(WORDS[int(rng.integers(len(WORDS)))] + PUNCT[int(rng.integers(len(PUNCT)))] for _ in range(k))


def test_rouge_l_equals_rouge_score_package():
    # rouge_score's defaults: DefaultTokenizer without a stemmer ("running" and "run" differ).
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = np.random.default_rng(1)
    pairs = [(_random_text(rng), _random_text(rng)) for _ in range(400)]
    pairs += [("", ""), ("", "cat"), ("cat", ""), ("...", "cat"), ("running cat", "run cat"), ("Über alles", "über")]
    for ref, pred in pairs:
        want = scorer.score(ref, pred)["rougeL"].fmeasure
        assert abs(M.rouge_l(ref, pred) - want) < TOL, (ref, pred)
    refs, preds = zip(*pairs, strict=True)
    mean = M.compute("sft", ["rouge_l"], list(refs), list(preds))["rouge_l"]
    assert abs(mean - np.mean([scorer.score(r, p)["rougeL"].fmeasure for r, p in pairs])) < TOL


def test_exact_match_and_token_f1_equal_squad_script():
    rng = np.random.default_rng(2)
    pairs = [(_random_text(rng, 6), _random_text(rng, 6)) for _ in range(400)]
    pairs += [("", ""), ("The cat", "cat"), ("a", ""), ("Cat!", "cat"), ("cat cat dog", "cat dog dog")]
    for ref, pred in pairs:
        assert M.exact_match(ref, pred) == _squad_em(ref, pred), (ref, pred)
        assert abs(M.token_f1(ref, pred) - _squad_f1(ref, pred)) < TOL, (ref, pred)
    refs, preds = map(list, zip(*pairs, strict=True))
    got = M.compute("seq2seq", ["exact_match", "token_f1"], refs, preds)
    assert abs(got["exact_match"] - np.mean([_squad_em(r, p) for r, p in pairs])) < TOL
    assert abs(got["token_f1"] - np.mean([_squad_f1(r, p) for r, p in pairs])) < TOL


def test_loss_and_perplexity():
    losses = [0.5, 1.25, 2.0, 0.1]
    got = M.compute("sft", ["loss", "perplexity"], ["a"] * 4, ["b"] * 4, losses)
    assert abs(got["loss"] - sum(losses) / 4) < TOL
    assert abs(got["perplexity"] - math.exp(sum(losses) / 4)) < TOL
    with pytest.raises(ValueError, match="perplexity needs a loss"):
        M.compute("sft", ["perplexity"], ["a"], ["b"], None)


def test_empty_and_mismatched_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        M.compute("classification", ["accuracy"], [], [])
    with pytest.raises(ValueError, match="references"):
        M.compute("classification", ["accuracy"], ["a"], [])


def test_metrics_for_task_defaults_and_rejects_wrong_task():
    from verifily_action.errors import VerifilyError

    assert M.metrics_for("classification") == ["accuracy", "macro_f1"]
    assert "loss" in M.metrics_for("sft")
    with pytest.raises(VerifilyError, match="rouge_l"):
        M.metrics_for("classification", ["rouge_l"])


def test_metrics_module_does_not_import_torch():
    mods = "verifily_action.evaluate.metrics, verifily_action.evaluate.bootstrap, verifily_action.evaluate.slices"
    code = f"import sys, {mods}, verifily_action.evaluate.hard; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("n_labels", [3, 20])  # few labels: counted label by label; many: one bincount
def test_macro_f1_of_resampled_rows_equals_sklearn(n_labels):
    rng = np.random.default_rng(n_labels)
    names = [f"l{i}" for i in range(n_labels)]
    n = 120
    refs = _random_labels(rng, n, names)
    preds = [r if rng.random() < 0.5 else lab for r, lab in zip(refs, _random_labels(rng, n, names), strict=True)]
    macro = M.MacroF1(refs, preds, "all_labels")
    assert macro.ref.dtype.itemsize == 1  # small codes: a resample copies bytes, not int64s
    idx = rng.integers(0, n, size=(7, n))
    got = macro.of_codes(macro.ref[idx], macro.pred[idx], weighted=False)
    for row, value in zip(idx, got, strict=True):
        r, p = [refs[i] for i in row], [preds[i] for i in row]
        assert abs(value - skm.f1_score(r, p, average="macro", zero_division=0)) < TOL
