"""False-discovery control across a comparison's slices (compare/fdr.py): q-values equal scipy's and statsmodels',
`significant` and everything built on it (▲/▼, the summary, `:significant` gates) follow q, and by simulation a
comparison of two runs with no real difference flags a slice at most 5% of the time (with raw p-values: most of the
time)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import false_discovery_control
from statsmodels.stats.multitest import multipletests

from tests.compare_fakes import make_run, records
from verifily_action.compare import compare, failed_gates, fdr
from verifily_action.compare.paired import mcnemar_exact
from verifily_action.report import comparison as render
from verifily_action.schemas import validator

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("method", ["bh", "by"])
@pytest.mark.parametrize("m", [1, 2, 7, 40, 250])
def test_q_values_equal_scipy_and_statsmodels(method, m):
    rng = np.random.default_rng(m)
    p = rng.random(m) ** 3
    p[::4] = p[0]  # ties
    p[-1] = 1.0
    q = fdr.adjust(p, method)
    assert q == pytest.approx(false_discovery_control(p, method=method), rel=1e-12, abs=1e-15)
    assert q == pytest.approx(multipletests(p, method=f"fdr_{method}")[1], rel=1e-12, abs=1e-15)


def test_rows_at_once_equal_one_by_one():
    p = np.random.default_rng(3).random((50, 12)) ** 2
    for method in fdr.METHODS:
        whole = fdr.adjust_rows(p, method)
        assert np.array_equal(whole, np.stack([fdr.adjust(row, method) for row in p]))


def test_q_is_never_below_p_and_keeps_their_order():
    p = np.random.default_rng(4).random(40) ** 4
    for method in fdr.METHODS:
        q = fdr.adjust(p, method)
        assert np.all(q >= p) and np.all(q <= 1)
        assert np.all(np.diff(q[np.argsort(p)]) >= 0)
    assert fdr.adjust([], "bh").size == 0
    with pytest.raises(ValueError, match="unknown false-discovery method"):
        fdr.adjust([0.1], "holm")


def _null_share(comparisons: int, slices: int, n: int, seed: int) -> tuple[float, float]:
    """Share of comparisons of two runs with no real difference that flag any of `slices` slices: (raw p, BH q)."""
    rng = np.random.default_rng(seed)
    discordant = rng.binomial(n, 2 * 0.8 * 0.2, size=(comparisons, slices))
    b = rng.binomial(discordant, 0.5)
    table = np.array([[mcnemar_exact(i, j) if i + j <= n else 1.0 for j in range(n + 1)] for i in range(n + 1)])
    p = table[b, discordant - b]
    return float(np.mean((p < 0.05).any(axis=1))), float(np.mean((fdr.adjust_rows(p, "bh") < 0.05).any(axis=1)))


def test_no_real_difference_on_40_slices_flags_at_most_5_percent_of_comparisons():
    comparisons = 4000
    raw, adjusted = _null_share(comparisons, slices=40, n=100, seed=0)
    error = 3 * math.sqrt(0.05 * 0.95 / comparisons)  # three standard errors of a 5% share
    assert adjusted <= 0.05 + error, adjusted
    assert raw > 0.5, raw  # each slice alone at 95%: most comparisons flag something (bench: 71%)


def _config_fdr(run, method):
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + f"eval: {{fdr: {method}}}\n", encoding="utf-8")


@pytest.fixture(scope="module")
def borderline(tmp_path_factory):
    """Eight sources of 100; the candidate is 14 points better on one (p=0.02), equal elsewhere."""
    root = tmp_path_factory.mktemp("fdr")
    sources = {f"s{i}": 100 for i in range(8)}
    base = {s: 0.7 for s in sources}
    a = make_run(root, "a", records(sources, base, seed=1))
    b = make_run(root, "b", records(sources, {**base, "s0": 0.84}, seed=2))
    return a, b


def test_significance_follows_q_not_p(borderline):
    c = compare(list(borderline), metrics=["accuracy"])
    assert c["fdr"] == [{"run": "b", "method": "bh", "tests": 9}]
    deltas = [r["deltas"][0] for r in c["rows"]]
    q = fdr.adjust([d["p_value"] for d in deltas], "bh")
    assert [d["q_value"] for d in deltas] == pytest.approx(q.tolist())
    assert [d["significant"] for d in deltas] == [bool(x < 0.05) for x in q]
    (s0,) = [r["deltas"][0] for r in c["rows"] if r["slice"] == {"source": "s0"}]
    # p < 0.05 on its own, not after adjusting for the 9 tests: no ▲, no "improved", gates pass
    assert s0["p_value"] < 0.05 <= s0["q_value"] and not s0["significant"]
    assert not any("improved" in line for line in c["summary"])
    assert not any("▲" in cell or "▼" in cell for line in render.cells(c) for cell in line)
    assert failed_gates(compare(list(borderline), metrics=["accuracy"], fail_on=["accuracy@source=s0>0:sig"])) == []


def test_the_same_change_is_significant_when_fewer_slices_are_tested(tmp_path):
    # s0 of the fixture on its own (the same draws): the whole set and s0 are the same two tests, so q = p
    a = make_run(tmp_path, "a", records({"s0": 100}, {"s0": 0.7}, seed=1))
    b = make_run(tmp_path, "b", records({"s0": 100}, {"s0": 0.84}, seed=2))
    alone = compare([a, b], metrics=["accuracy"], fail_on=["accuracy@source=s0>0:sig"])
    (one,) = [r["deltas"][0] for r in alone["rows"] if r["slice"]]
    assert one["q_value"] == pytest.approx(one["p_value"]) and one["q_value"] < 0.05
    assert one["significant"] and failed_gates(alone)
    assert any(line.startswith("accuracy on source=s0 improved: ") for line in alone["summary"])


def test_q_column_in_table_markdown_and_json(borderline):
    c = compare(list(borderline), metrics=["accuracy"])
    assert render.header(c)[-4:] == ["Δ b", "95% CI", "p", "q"]
    (s0,) = [line for line in render.cells(c) if line[0] == "source=s0"]
    (d,) = [r["deltas"][0] for r in c["rows"] if r["slice"] == {"source": "s0"}]
    assert s0[-2:] == [f"{d['p_value']:.3f}", f"{d['q_value']:.2f}"]
    md = render.markdown(c)
    assert "Benjamini–Hochberg over the run's 9 slice × metric tests" in md
    assert "| p | q |" in md
    doc = json.loads(render.to_json(c))
    assert list(validator("comparison.schema.json").iter_errors(doc)) == []
    assert all("q_value" in d for r in doc["rows"] for d in r["deltas"])


def test_by_from_the_option_or_the_candidate_config(borderline, tmp_path, cli):
    a, b = borderline
    by = compare([a, b], metrics=["accuracy"], fdr_method="by")
    assert by["fdr"][0]["method"] == "by"
    bh = compare([a, b], metrics=["accuracy"])
    for r_by, r_bh in zip(by["rows"], bh["rows"], strict=True):
        assert r_by["deltas"][0]["q_value"] >= r_bh["deltas"][0]["q_value"]
    # the candidate's config decides without the option
    import shutil

    b2 = tmp_path / "b2"
    shutil.copytree(b, b2)
    _config_fdr(b2, "by")
    assert compare([a, b2], metrics=["accuracy"])["fdr"][0]["method"] == "by"
    out = cli("compare", "--runs", f"{a},{b2}", "--fdr", "bh", "-f", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fdr"][0]["method"] == "bh"
    bad = cli("compare", "--runs", f"{a},{b}", "--fdr", "holm")
    assert bad.returncode == 2 and "unknown --fdr 'holm'" in bad.stderr


def test_a_not_compared_slice_is_no_test(tmp_path):
    a = make_run(tmp_path, "a", records({"human": 100, "synthetic": 100}, {"human": 0.8, "synthetic": 0.6}, seed=1))
    b = make_run(tmp_path, "b", records({"human": 100, "new": 50}, {"human": 0.8, "new": 0.5}, seed=2))
    c = compare([a, b], metrics=["accuracy"])
    absent = [r["deltas"][0] for r in c["rows"] if r["deltas"][0]["status"] != "compared"]
    assert absent and all(d["q_value"] is None and not d["significant"] for d in absent)
    assert c["fdr"][0]["tests"] == len(c["rows"]) - len(absent)


def test_coarse_resampled_p_values_are_named_when_they_cannot_pass_the_adjustment(tmp_path):
    sources = {f"s{i}": 40 for i in range(30)}
    acc = dict.fromkeys(sources, 0.7)
    a = make_run(tmp_path, "a", records(sources, acc, seed=1))
    b = make_run(tmp_path, "b", records(sources, acc, seed=2))
    c = compare([a, b])  # 31 slices x 2 metrics: a lone change needs p <= 0.05/62, under 1/1001
    assert any("raise eval.bootstrap_resamples" in n for n in c["notes"])
    assert not any("raise eval.bootstrap_resamples" in n for n in compare([a, b], metrics=["accuracy"])["notes"])
