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
    with pytest.raises(VerifilyError, match="exact up to 4"):
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
