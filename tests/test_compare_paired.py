"""Paired and unpaired statistics of a metric's change, on hand-built outcomes with known answers, checked against
statsmodels (McNemar), scipy (binomial test, bootstrap, permutation test) and scikit-learn (macro-F1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score
from statsmodels.stats.contingency_tables import mcnemar

from verifily_action.compare.paired import (
    Outcomes,
    discordant_pairs,
    mcnemar_exact,
    paired_deltas,
    unpaired_deltas,
    value_intervals,
)
from verifily_action.evaluate.metrics import per_example_scores

pytestmark = pytest.mark.unit


def cls(refs, preds) -> Outcomes:
    return Outcomes(per_example_scores("classification", refs, preds), list(refs), list(preds))


def with_loss(losses) -> Outcomes:
    n = len(losses)
    return Outcomes({"loss": np.asarray(losses, dtype=float)}, ["r"] * n, ["p"] * n)


@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (0, 1), (1, 0), (3, 3), (5, 0), (10, 2), (2, 10), (25, 40), (120, 90), (400, 330), (7, 1000)]
)
def test_mcnemar_exact_equals_statsmodels_and_scipy(b, c):
    table = [[50, b], [c, 50]]
    want = mcnemar(table, exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9, abs=1e-300)
    if b + c:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9, abs=1e-300)


def test_discordant_pairs_counted_by_hand():
    a = np.array([1, 1, 0, 0, 1, 0], dtype=float)
    b = np.array([1, 0, 1, 1, 0, 0], dtype=float)
    assert discordant_pairs(a, b) == (2, 2)


def _accuracy_pair(n: int, both: int, only_a: int, only_b: int) -> tuple[Outcomes, Outcomes]:
    refs = ["pos" if i % 3 else "neg" for i in range(n)]
    flip = {"pos": "neg", "neg": "pos"}
    pa, pb = [], []
    for i, r in enumerate(refs):
        a_right = i < both + only_a
        b_right = i < both or both + only_a <= i < both + only_a + only_b
        pa.append(r if a_right else flip[r])
        pb.append(r if b_right else flip[r])
    return cls(refs, pa), cls(refs, pb)


def test_paired_accuracy_delta_and_mcnemar_on_known_counts():
    a, b = _accuracy_pair(200, both=120, only_a=8, only_b=30)
    d = paired_deltas(["accuracy"], a, b, resamples=2000, seed=3)["accuracy"]
    assert d.value == pytest.approx((30 - 8) / 200)
    assert d.discordant == (8, 30)
    assert d.test == "mcnemar_exact" and d.paired
    table = [[120, 8], [30, 200 - 120 - 8 - 30]]
    assert d.p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert d.significant and d.p_value < 0.05
    assert d.ci_low < d.value < d.ci_high
    assert d.ci_low > 0  # 22 more right out of 38 discordant pairs: clearly positive


def test_no_change_is_not_significant_and_interval_spans_zero():
    a, b = _accuracy_pair(300, both=200, only_a=10, only_b=10)
    d = paired_deltas(["accuracy", "macro_f1"], a, b, seed=0)
    assert d["accuracy"].value == 0 and d["accuracy"].p_value == 1.0 and not d["accuracy"].significant
    assert d["accuracy"].ci_low < 0 < d["accuracy"].ci_high
    assert not d["macro_f1"].significant


def test_identical_runs_give_zero_width_interval_and_p_one():
    a, _ = _accuracy_pair(100, both=70, only_a=0, only_b=0)
    d = paired_deltas(["accuracy", "macro_f1"], a, a, seed=1)
    for m in ("accuracy", "macro_f1"):
        assert d[m].value == 0 and d[m].ci_low == 0 and d[m].ci_high == 0
        assert d[m].p_value == 1.0


def test_paired_macro_f1_delta_matches_sklearn():
    rng = np.random.default_rng(5)
    labels = ["a", "b", "c"]
    refs = [labels[i] for i in rng.integers(0, 3, 240)]
    pa = [r if rng.random() < 0.6 else labels[rng.integers(0, 3)] for r in refs]
    pb = [r if rng.random() < 0.8 else labels[rng.integers(0, 3)] for r in refs]
    d = paired_deltas(["macro_f1"], cls(refs, pa), cls(refs, pb), seed=0)["macro_f1"]
    want = f1_score(refs, pb, average="macro") - f1_score(refs, pa, average="macro")
    assert d.value == pytest.approx(want)
    assert d.test == "paired_permutation"
    assert d.ci_low < d.value < d.ci_high
    assert d.significant


def test_paired_macro_f1_permutation_p_matches_scipy():
    from verifily_action.evaluate.metrics import compute

    rng = np.random.default_rng(6)
    labels = ["a", "b", "c"]
    refs = [labels[i] for i in rng.integers(0, 3, 150)]
    pa = np.array([labels.index(r) if rng.random() < 0.6 else rng.integers(0, 3) for r in refs])
    pb = np.array([labels.index(r) if rng.random() < 0.7 else rng.integers(0, 3) for r in refs])

    def macro(codes):
        return compute("classification", ["macro_f1"], refs, [labels[i] for i in codes])["macro_f1"]

    ref = stats.permutation_test(
        (pa, pb),
        lambda x, y: macro(y) - macro(x),
        permutation_type="samples",
        n_resamples=3000,
        random_state=np.random.default_rng(3),
    ).pvalue
    mine = paired_deltas(
        ["macro_f1"], cls(refs, [labels[i] for i in pa]), cls(refs, [labels[i] for i in pb]), resamples=3000, seed=1
    )["macro_f1"]
    assert 0.005 < ref < 0.5  # a case where the p-value is neither trivial nor saturated
    assert mine.p_value == pytest.approx(ref, abs=0.025)


def test_paired_bootstrap_interval_matches_scipy_bootstrap():
    rng = np.random.default_rng(11)
    la = rng.normal(1.0, 0.3, 150)
    lb = la - 0.05 + rng.normal(0, 0.1, 150)
    d = paired_deltas(["loss"], with_loss(la), with_loss(lb), resamples=8000, seed=2)["loss"]
    ref = stats.bootstrap(
        (la, lb),
        lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=8000,
        method="percentile",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    assert d.value == pytest.approx(float(np.mean(lb - la)))
    # Two Monte-Carlo estimates of the same quantiles: agree to a small fraction of the interval's width.
    width = ref.high - ref.low
    assert d.ci_low == pytest.approx(ref.low, abs=0.06 * width)
    assert d.ci_high == pytest.approx(ref.high, abs=0.06 * width)


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.05])
def test_paired_permutation_p_value_matches_scipy(shift):
    rng = np.random.default_rng(21)
    la = rng.normal(1.0, 0.3, 80)
    lb = la - shift + rng.normal(0, 0.12, 80)
    d = paired_deltas(["loss"], with_loss(la), with_loss(lb), resamples=10000, seed=4)["loss"]
    ref = stats.permutation_test(
        (la, lb),
        lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=10000,
        alternative="two-sided",
        random_state=np.random.default_rng(8),
    ).pvalue
    assert d.p_value == pytest.approx(ref, abs=0.02)


def test_loss_direction_lower_is_better_in_sign_only():
    la = np.full(50, 1.0)
    lb = np.full(50, 0.8)
    d = paired_deltas(["loss", "perplexity"], with_loss(la), with_loss(lb), seed=0)
    assert d["loss"].value == pytest.approx(-0.2)
    assert d["perplexity"].value == pytest.approx(np.exp(0.8) - np.exp(1.0))
    assert d["loss"].significant  # every example improved


def test_unpaired_interval_matches_scipy_independent_bootstrap():
    rng = np.random.default_rng(2)
    ca = (rng.random(220) < 0.70).astype(float)
    cb = (rng.random(180) < 0.80).astype(float)
    refs_a, refs_b = ["x"] * 220, ["x"] * 180
    a = cls(refs_a, ["x" if c else "y" for c in ca])
    b = cls(refs_b, ["x" if c else "y" for c in cb])
    d = unpaired_deltas(["accuracy"], a, b, resamples=8000, seed=0)["accuracy"]
    assert d.value == pytest.approx(cb.mean() - ca.mean())
    assert not d.paired and d.test == "unpaired_bootstrap"
    ref = stats.bootstrap(
        (ca, cb),
        lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        vectorized=True,
        n_resamples=8000,
        method="percentile",
        random_state=np.random.default_rng(1),
    ).confidence_interval
    width = ref.high - ref.low
    assert d.ci_low == pytest.approx(ref.low, abs=0.06 * width)
    assert d.ci_high == pytest.approx(ref.high, abs=0.06 * width)
    # Unpaired p-value follows its interval: significant iff the interval leaves out 0 (up to Monte-Carlo edges).
    assert d.significant == (d.ci_low > 0 or d.ci_high < 0)


def test_seeded_and_reproducible():
    a, b = _accuracy_pair(150, both=90, only_a=10, only_b=20)
    one = paired_deltas(["accuracy", "macro_f1"], a, b, seed=7)
    two = paired_deltas(["accuracy", "macro_f1"], a, b, seed=7)
    other = paired_deltas(["accuracy", "macro_f1"], a, b, seed=8)
    assert one == two
    assert one["macro_f1"].ci_low != other["macro_f1"].ci_low


def test_chunked_resampling_gives_the_same_answer(monkeypatch):
    from verifily_action.compare import paired

    a, b = _accuracy_pair(120, both=70, only_a=10, only_b=20)
    whole = paired_deltas(["macro_f1"], a, b, resamples=500, seed=0)["macro_f1"]
    monkeypatch.setattr(paired, "_MAX_CELLS", 120 * 7)  # 7 resamples per chunk
    chunked = paired_deltas(["macro_f1"], a, b, resamples=500, seed=0)["macro_f1"]
    assert chunked.value == whole.value
    # Same random stream consumed in pieces: identical resamples, identical answer.
    assert (chunked.ci_low, chunked.ci_high, chunked.p_value) == (whole.ci_low, whole.ci_high, whole.p_value)


def test_value_interval_matches_eval_bootstrap():
    from verifily_action.evaluate import bootstrap

    a, _ = _accuracy_pair(200, both=130, only_a=20, only_b=0)
    mine = value_intervals(["accuracy", "macro_f1"], a, seed=0)
    theirs = bootstrap.intervals(
        {"accuracy": mine["accuracy"][0], "macro_f1": mine["macro_f1"][0]},
        a.scores,
        a.references,
        a.predictions,
        seed=0,
    )
    for m in ("accuracy", "macro_f1"):
        assert mine[m] == pytest.approx((theirs[m].value, theirs[m].ci_low, theirs[m].ci_high))


def test_mismatched_lengths_refused():
    a, _ = _accuracy_pair(10, both=5, only_a=0, only_b=0)
    b, _ = _accuracy_pair(12, both=5, only_a=0, only_b=0)
    with pytest.raises(ValueError):
        paired_deltas(["accuracy"], a, b)


# ---------------------------------------------------------------- the interval and the test agree (issue 16)


def test_the_disagreeing_case_of_the_issue_now_agrees():
    # 150 examples, 14 the baseline gets right and the run wrong, 5 the reverse: -6 points. McNemar's exact test
    # says p=0.064; the percentile bootstrap alone said -11.3...-0.7, leaving out 0.
    a, b = _accuracy_pair(150, both=100, only_a=14, only_b=5)
    d = paired_deltas(["accuracy"], a, b, seed=0)["accuracy"]
    assert d.value == pytest.approx(-9 / 150)
    assert d.p_value == pytest.approx(mcnemar(np.array([[100, 14], [5, 31]]), exact=True).pvalue)
    assert 0.05 < d.p_value < 0.07 and not d.significant
    assert d.reconciled == "interval_to_zero"  # the bootstrap's interval had left out 0: the test decides
    assert d.ci_low < -0.1 and d.ci_high == 0.0


def _leaves_out_zero(d) -> bool:
    return d.ci_low > 0 or d.ci_high < 0


@pytest.mark.parametrize("seed", range(6))
def test_interval_leaves_out_zero_exactly_when_p_is_under_alpha(seed):
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c"]
    seen = set()
    for _ in range(25):
        n = int(rng.integers(40, 160))
        refs = [labels[i] for i in rng.integers(0, 3, n)]
        skill = rng.uniform(0.55, 0.8)
        pa = [r if rng.random() < skill else labels[rng.integers(0, 3)] for r in refs]
        gain = rng.uniform(-0.12, 0.12)
        pb = [r if rng.random() < skill + gain else labels[rng.integers(0, 3)] for r in refs]
        losses = rng.normal(1.0, 0.3, n)
        a = Outcomes({**cls(refs, pa).scores, "loss": losses}, refs, pa)
        b = Outcomes({**cls(refs, pb).scores, "loss": losses - gain + rng.normal(0, 0.3, n)}, refs, pb)
        confidence = float(rng.choice([0.9, 0.95, 0.99]))
        both = paired_deltas(["accuracy", "macro_f1", "loss"], a, b, resamples=300, confidence=confidence, seed=1)
        apart = unpaired_deltas(["accuracy", "loss"], a, b, resamples=300, confidence=confidence, seed=1)
        for d in [*both.values(), *apart.values()]:
            assert _leaves_out_zero(d) == (d.p_value < 1 - confidence) == d.significant, d
            assert d.ci_low <= d.value <= d.ci_high
            seen.add(d.reconciled)
    assert None in seen  # most cases agree as computed


def test_agree_extends_the_interval_or_takes_the_intervals_p():
    from verifily_action.compare.paired import agree, interval_p

    stats = np.random.default_rng(0).normal(0.05, 0.02, 1000)
    low, high = np.quantile(stats, [0.025, 0.975])
    assert low > 0
    # the test keeps 0: the interval reaches it
    assert agree(low, high, 0.2, 0.05, stats) == (0.0, high, 0.2, "interval_to_zero")
    # the test rejects but the interval holds 0: p becomes the interval's own, at least alpha
    wide = np.random.default_rng(1).normal(0.03, 0.03, 1000)
    wl, wh = np.quantile(wide, [0.025, 0.975])
    assert wl < 0 < wh
    lo, hi, p, how = agree(wl, wh, 0.01, 0.05, wide)
    assert (lo, hi, how) == (wl, wh, "p_from_interval") and p == pytest.approx(interval_p(wide)) and p >= 0.05
    # agreeing inputs pass through
    assert agree(low, high, 0.001, 0.05, stats) == (low, high, 0.001, None)


@pytest.mark.parametrize("kind", ["normal", "discrete", "ties"])
def test_interval_p_is_where_the_percentile_interval_reaches_zero(kind):
    from verifily_action.compare.paired import interval_p

    rng = np.random.default_rng(7)
    for _ in range(200):
        size = int(rng.integers(2, 400))
        if kind == "normal":
            x = rng.normal(rng.normal(0, 1), 1, size)
        elif kind == "discrete":
            x = rng.integers(-3, 5, size) / 100
        else:
            x = np.round(rng.normal(0.1, 0.2, size), 1)
        cut = interval_p(x)
        for alpha in [*rng.uniform(0.001, 0.999, 10), cut * (1 + 1e-9) + 1e-12, cut * (1 - 1e-9) - 1e-12]:
            if not 0 < alpha < 1:
                continue
            low, high = np.quantile(x, [alpha / 2, 1 - alpha / 2])
            assert (low <= 0 <= high) == (alpha <= cut)
