"""The arithmetic of the segment methods (attribute/retrain.py): which retrains each plans, and exact segment Shapley
values against their definition (the average marginal gain over every ordering)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from verifily_action.attribute import retrain
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit


def test_the_plans_name_one_retrain_per_segment_or_coalition():
    assert retrain.plan("loo", ["a", "b", "c"]) == [frozenset("a"), frozenset("b"), frozenset("c")]
    shapley = retrain.plan("segment-shapley", ["a", "b", "c"])
    assert len(shapley) == 2**3 - 2 and frozenset() not in shapley and frozenset("abc") not in shapley
    with pytest.raises(VerifilyError, match="exact segment Shapley goes up to 4"):
        retrain.plan("segment-shapley", list("abcde"))


def test_shapley_values_equal_the_average_marginal_gain_over_orderings():
    rng = np.random.default_rng(0)
    values = ["a", "b", "c", "d"]
    utility = {frozenset(s): np.asarray(rng.random()) for r in range(1, 5) for s in itertools.combinations(values, r)}
    got = retrain.shapley_values(utility, values)
    for v in values:
        gains = []
        for order in itertools.permutations(values):
            before = frozenset(order[: order.index(v)])
            gains.append(float(utility[before | {v}]) - float(utility.get(before, 0.0)))
        assert abs(float(got[v]) - sum(gains) / math.factorial(4)) < 1e-12
    assert abs(sum(float(x) for x in got.values()) - float(utility[frozenset(values)])) < 1e-12  # efficiency


def test_seeded_values_take_the_mean_over_seeds_and_widen_with_their_spread():
    rng = np.random.default_rng(1)
    values = ["a", "b"]
    n = 400
    base = rng.random(n)

    def scores(spread: float) -> dict[frozenset, np.ndarray]:
        shift = np.array([[-spread], [spread]])  # two seeds, one above and one below
        return {
            frozenset("ab"): (base > 0.2) + 0.0 + shift * 0,
            frozenset("a"): (base > 0.5) + shift,
            frozenset("b"): (base > 0.4) + 0.0 + shift * 0,
        }

    def loo(u):
        full = frozenset(values)
        return {v: u[full] - u[full - {v}] for v in values}

    idx = np.arange(n)
    calm = retrain.seeded_values(scores(0.0), loo, idx, 400, 0.95, np.random.default_rng(0))
    noisy = retrain.seeded_values(scores(0.2), loo, idx, 400, 0.95, np.random.default_rng(0))
    # the point value is the mean over seeds: the symmetric spread leaves it where it was
    assert abs(calm["b"][0] - noisy["b"][0]) < 1e-12
    assert abs(calm["b"][0] - ((base > 0.2).mean() - (base > 0.5).mean())) < 1e-12
    width = {k: v[2] - v[1] for k, v in (("calm", calm["b"]), ("noisy", noisy["b"]))}
    assert width["noisy"] > width["calm"] + 0.1  # the seeds' disagreement is in the interval
    assert abs((calm["a"][2] - calm["a"][1]) - (noisy["a"][2] - noisy["a"][1])) < 1e-12  # a's coalitions: no spread


def test_seeded_intervals_cover_a_null_segment_at_their_confidence_with_three_seeds():
    """Training noise only (every seed of every coalition scores the same rows, shifted by its own N(0, 0.03)); the
    segment's true leave-one-out value is 0. A bootstrap over 3 seeds (the method before) covered it in 67% of the
    repetitions; Student's t with 2 degrees of freedom covers it at the stated 95%."""
    rng = np.random.default_rng(7)
    base = (rng.random(300) > 0.3) + 0.0
    full, kept = frozenset("ab"), frozenset("a")

    def loo(u):
        return {"b": u[full] - u[kept]}

    covered = 0
    reps = 300
    for _ in range(reps):
        scores = {c: base[None, :] + rng.normal(0, 0.03, size=(3, 1)) for c in (full, kept)}
        _, lo, hi = retrain.seeded_values(scores, loo, np.arange(300), 100, 0.95, rng)["b"]
        covered += lo <= 0 <= hi
    assert 0.9 <= covered / reps <= 0.99, covered / reps


def test_the_orderings_own_variance_is_zero_when_gains_do_not_depend_on_order():
    values = ["a", "b", "c"]
    orders = [("a", "b", "c"), ("c", "b", "a"), ("b", "a", "c")]
    weight = {"a": 0.1, "b": 0.2, "c": 0.3}
    subsets = [frozenset(s) for r in range(1, 4) for s in itertools.combinations(values, r)]
    additive = {s: np.asarray(sum(weight[v] for v in s)) for s in subsets}
    assert all(abs(v) < 1e-15 for v in retrain.ordering_variance(additive, orders).values())
    # a's gain: 1.0 first (ordering 1), 1.0 last (2: 1.5 - 0.5), 0.5 after b (3: 0.7 - 0.2); their variance / 3
    u = {**additive, frozenset("a"): np.asarray(1.0), frozenset("ab"): np.asarray(0.7), frozenset("abc"): 1.5}
    gains = [1.0, 1.5 - float(u[frozenset("bc")]), 0.7 - float(u[frozenset("b")])]
    assert abs(retrain.ordering_variance(u, orders)["a"] - np.var(gains, ddof=1) / 3) < 1e-12


def test_monte_carlo_orderings_fit_the_budget_and_add_up():
    values = list("abcdef")
    drops, orders = retrain.monte_carlo_plan(values, coalitions=20, seed=3)
    assert len(drops) <= 20 and len(orders) >= 2 and len(set(drops)) == len(drops)
    full = frozenset(values)
    kept = {full - d for d in drops}
    for order in orders:  # every prefix of every ordering has its retrain (the full set is the run itself)
        assert all(frozenset(order[:i]) in kept for i in range(1, len(values)))
    rng = np.random.default_rng(0)
    utility = {k: np.asarray(rng.random()) for k in kept | {full}}
    got = retrain.sampled_shapley(utility, orders)
    assert abs(sum(float(x) for x in got.values()) - float(utility[full])) < 1e-12  # efficiency, ordering by ordering
    with pytest.raises(VerifilyError, match="two orderings need up to 10 retrains and the budget leaves 6"):
        retrain.monte_carlo_plan(values, coalitions=6, seed=3)


def test_monte_carlo_over_every_ordering_is_the_exact_value():
    values = ["a", "b", "c", "d"]
    rng = np.random.default_rng(2)
    utility = {frozenset(s): np.asarray(rng.random()) for r in range(1, 5) for s in itertools.combinations(values, r)}
    every = list(itertools.permutations(values))
    got, exact = retrain.sampled_shapley(utility, every), retrain.shapley_values(utility, values)
    assert max(abs(float(got[v]) - float(exact[v])) for v in values) < 1e-12


def test_one_source_for_the_attribute_defaults():
    """The config schema's `attribute:` defaults and the options dataclass agree with attribute/defaults.py."""
    from verifily_action.attribute import defaults
    from verifily_action.attribute.runner import AttributeOptions
    from verifily_action.schemas import load_schema

    props = load_schema("train.schema.json")["properties"]["attribute"]["properties"]
    assert {k: props[k]["default"] for k in ("k", "jobs", "budget", "seeds")} == {
        "k": defaults.K, "jobs": defaults.JOBS, "budget": defaults.BUDGET, "seeds": defaults.SEEDS,
    }  # fmt: skip
    opts = AttributeOptions()
    assert (opts.k, opts.jobs, opts.budget, opts.seeds, opts.resamples, opts.projection_dim, opts.projection) == (
        defaults.K, defaults.JOBS, defaults.BUDGET, defaults.SEEDS, defaults.RESAMPLES, defaults.PROJECTION_DIM,
        defaults.PROJECTION,
    )  # fmt: skip
