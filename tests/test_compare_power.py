"""The smallest detectable change of a slice (compare/power.py) against simulations of the tests compare runs: at the
MDE a change is found about 80% of the time, at half of it far less often; and where it shows in the comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.compare_fakes import make_run, records
from verifily_action.compare import compare
from verifily_action.compare.paired import Outcomes, mcnemar_exact, paired_deltas
from verifily_action.compare.power import mde_from_se, mde_mcnemar, mde_paired_mean
from verifily_action.report import comparison as render

pytestmark = pytest.mark.unit


def _mcnemar_power(n: int, discordance: float, delta: float, sims: int, seed: int) -> float:
    """Share of simulated paired evaluations where McNemar's exact test rejects at 0.05: each example is right for
    the baseline only with probability (p_d - delta) / 2, for the run only with (p_d + delta) / 2."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [(discordance - delta) / 2, (discordance + delta) / 2, 1 - discordance], size=sims)
    return float(np.mean([mcnemar_exact(int(b), int(c)) < 0.05 for b, c, _ in counts]))


@pytest.mark.parametrize(("n", "b", "c"), [(200, 20, 20), (400, 40, 40), (1000, 50, 50), (800, 120, 120)])
def test_accuracy_mde_is_found_80_percent_of_the_time(n, b, c):
    d = mde_mcnemar(b, c, n)
    assert d is not None
    sims = 3000
    found = _mcnemar_power(n, (b + c) / n, d, sims, seed=n)
    error = 3 * math.sqrt(0.8 * 0.2 / sims)
    # the normal approximation with continuity correction against the exact test: 0.80-0.85 in these cases
    assert 0.8 - error <= found <= 0.87, found
    assert _mcnemar_power(n, (b + c) / n, d / 2, sims, seed=n + 1) < 0.45


def test_accuracy_mde_when_the_runs_never_disagree_is_cautious():
    d = mde_mcnemar(0, 0, 200)
    assert d is not None and 0.02 < d < 0.08
    # every discordant example then goes the run's way: d * n of them on average
    assert _mcnemar_power(200, d, d, 3000, seed=5) >= 0.8
    assert mde_mcnemar(0, 0, 3) == 1.0  # three examples cannot show any change


def test_accuracy_mde_shrinks_with_n_and_grows_with_disagreement():
    assert mde_mcnemar(20, 20, 200) > mde_mcnemar(80, 80, 800) > mde_mcnemar(320, 320, 3200)
    assert mde_mcnemar(10, 10, 400) < mde_mcnemar(40, 40, 400) < mde_mcnemar(80, 80, 400)
    # 95% -> 99% confidence asks for more
    assert mde_mcnemar(40, 40, 400, confidence=0.99) > mde_mcnemar(40, 40, 400)


def _permutation_power(n: int, sd: float, delta: float, sims: int, seed: int) -> float:
    """Share of simulated paired evaluations of a mean metric (loss) whose change compare calls significant."""
    rng = np.random.default_rng(seed)
    found = 0
    for k in range(sims):
        base = rng.normal(1.0, 0.5, n)
        a = Outcomes({"loss": base}, ["r"] * n, ["p"] * n)
        b = Outcomes({"loss": base + delta + rng.normal(0, sd, n)}, ["r"] * n, ["p"] * n)
        found += paired_deltas(["loss"], a, b, resamples=499, seed=k)["loss"].significant
    return found / sims


def test_mean_metric_mde_is_found_about_80_percent_of_the_time_by_the_permutation_test():
    n, sd, sims = 120, 0.3, 400
    z = np.random.default_rng(0).normal(size=n)
    observed = (z - z.mean()) / z.std(ddof=1) * sd  # the observed per-example differences: SD exactly 0.3
    d = mde_paired_mean(observed)
    assert d == pytest.approx((1.959964 + 0.841621) * sd / math.sqrt(n), rel=1e-5)
    found = _permutation_power(n, sd, d, sims, seed=1)
    error = 3 * math.sqrt(0.8 * 0.2 / sims)
    # A t-test would reach 0.79; the permutation test, which must also agree with its bootstrap interval, a little
    # less (0.74-0.77 in simulations): the z-formula is slightly optimistic for it.
    assert 0.8 - 0.06 - error <= found <= 0.8 + error, found
    assert _permutation_power(n, sd, d / 2, sims, seed=2) < 0.4


def test_mde_needs_something_to_measure():
    assert mde_paired_mean(np.array([0.2])) is None
    assert mde_paired_mean(np.zeros(50)) is None
    assert mde_from_se(0.0) is None and mde_from_se(float("nan")) is None
    assert mde_from_se(0.01) == pytest.approx(0.028016, rel=1e-4)


def test_every_compared_slice_has_its_mde_and_the_summary_names_the_blindest(tmp_path):
    sources = {"human": 400, "synthetic": 120}
    a = make_run(tmp_path, "a", records(sources, {"human": 0.8, "synthetic": 0.7}, seed=1))
    b = make_run(tmp_path, "b", records(sources, {"human": 0.8, "synthetic": 0.7}, seed=2))
    c = compare([a, b])
    for row in c["rows"]:
        (d,) = row["deltas"]
        assert d["mde"] is not None and d["mde"] > 0, row
        if row["metric"] == "accuracy":
            n = row["values"][0]["n"]
            assert d["mde"] == pytest.approx(mde_mcnemar(*d["discordant"], n))
    syn = next(r for r in c["rows"] if r["metric"] == "accuracy" and r["slice"] == {"source": "synthetic"})
    pts = f"{syn['deltas'][0]['mde'] * 100:.1f}"
    want = f"accuracy on source=synthetic, n=120: changes under {pts} pts cannot be seen here (80% power)"
    want += " — add eval rows"
    assert want in c["summary"]
    assert f"- {want}" in render.markdown(c)
    doc = json.loads(render.to_json(c))
    assert all("mde" in d for r in doc["rows"] for d in r["deltas"])
