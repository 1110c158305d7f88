"""Gate rules: the syntax, clear errors on bad rules, and when a rule fails."""

from __future__ import annotations

import pytest

from verifily_action.compare.gates import Threshold, evaluate, parse_rule
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit


def test_parse_full_rule():
    r = parse_rule("macro_f1@source=synthetic<-0.02")
    assert (r.metric, r.slice_key, r.slice_value, r.op) == ("macro_f1", "source", "synthetic", "<")
    assert r.thresholds == (Threshold(-0.02, False),)
    assert not r.significant_only


@pytest.mark.parametrize(
    ("text", "thresholds", "sig"),
    [
        ("accuracy<-1pts:significant", (Threshold(-0.01, False),), True),
        ("accuracy <= -2pt : sig", (Threshold(-0.02, False),), True),
        ("loss>0.05", (Threshold(0.05, False),), False),
        ("macro_f1@source=*<-2pts&-5%", (Threshold(-0.02, False), Threshold(-5.0, True)), False),
        ("rouge_l>=+1e-2", (Threshold(0.01, False),), False),
    ],
)
def test_parse_variants(text, thresholds, sig):
    r = parse_rule(text)
    assert [t.relative for t in r.thresholds] == [t.relative for t in thresholds]
    assert [t.value for t in r.thresholds] == pytest.approx([t.value for t in thresholds])
    assert r.significant_only is sig


def test_slice_value_may_hold_spaces_and_dots():
    r = parse_rule("accuracy@origin=imdb v1.2<-0.01")
    assert (r.slice_key, r.slice_value) == ("origin", "imdb v1.2")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("macro_f1", "does not read"),
        ("macro-f1<-0.02", "does not read"),
        ("f1<-0.02", "unknown metric 'f1'"),
        ("acuracy<-0.02", "did you mean accuracy"),
        ("accuracy<-two", "not a number"),
        ("accuracy<-0.02:often", "unknown flag"),
        ("accuracy@source<-0.02", "does not read"),
    ],
)
def test_bad_rules_are_clear(text, says):
    with pytest.raises(VerifilyError) as exc:
        parse_rule(text, origin="config of b")
    assert says in exc.value.message
    assert "config of b" in exc.value.message
    assert "METRIC" in (exc.value.hint or "")


def _row(slice_, metric, delta, relative, significant, status="compared", run="b"):
    return {
        "slice": slice_,
        "metric": metric,
        "values": [{"value": 0.5}, {"value": 0.5 + (delta or 0)}],
        "deltas": [{"run": run, "status": status, "delta": delta, "relative": relative, "significant": significant}],
    }


def _check(rule, rows):
    return evaluate([parse_rule(rule)], rows, lambda row, i: "change")


@pytest.mark.parametrize(
    ("rule", "delta", "relative", "significant", "fails"),
    [
        ("macro_f1<-0.02", -0.03, -0.06, False, True),
        ("macro_f1<-0.02", -0.01, -0.02, True, False),
        ("macro_f1<-0.02", -0.02, -0.04, True, False),  # strict <
        ("macro_f1<=-0.02", -0.02, -0.04, True, True),
        ("macro_f1<-2pts", -0.025, -0.05, False, True),
        ("macro_f1<-5%", -0.03, -0.06, False, True),
        ("macro_f1<-5%", -0.03, -0.04, False, False),
        ("macro_f1<-2pts&-5%", -0.03, -0.04, False, False),  # absolute holds, relative does not
        ("macro_f1<-2pts&-5%", -0.03, -0.07, False, True),
        ("macro_f1<-0.02:significant", -0.05, -0.1, False, False),
        ("macro_f1<-0.02:significant", -0.05, -0.1, True, True),
        ("macro_f1<-5%", -0.05, None, True, False),  # baseline 0: a relative threshold cannot hold
    ],
)
def test_rule_outcomes(rule, delta, relative, significant, fails):
    (res,) = _check(rule, [_row({}, "macro_f1", delta, relative, significant)])
    assert res.checked and res.failed is fails
    assert ("FAILED" in res.message) is fails


def test_slice_selectors():
    rows = [
        _row({}, "accuracy", -0.1, -0.2, True),
        _row({"source": "human"}, "accuracy", 0.0, 0.0, False),
        _row({"source": "synthetic"}, "accuracy", -0.1, -0.2, True),
        _row({"origin": "imdb"}, "accuracy", -0.1, -0.2, True),
        _row({"source": "synthetic"}, "macro_f1", -0.1, -0.2, True),
    ]
    assert [r.slice for r in _check("accuracy<0", rows)] == [{}]
    assert [r.slice for r in _check("accuracy@source=human<0", rows)] == [{"source": "human"}]
    wild = _check("accuracy@source=*<0", rows)
    assert [(r.slice, r.failed) for r in wild] == [({"source": "human"}, False), ({"source": "synthetic"}, True)]


def test_slice_in_one_run_only_is_not_checked_and_does_not_fail():
    rows = [_row({"source": "new"}, "accuracy", None, None, False, status="only_in_run")]
    (res,) = _check("accuracy@source=*<0", rows)
    assert not res.checked and not res.failed
    assert "not checked" in res.message


def test_config_gates_apply_to_their_own_run_only():
    rule = parse_rule("accuracy<0", origin="config of c")
    rows = [
        {
            "slice": {},
            "metric": "accuracy",
            "deltas": [
                {"run": "b", "status": "compared", "delta": -0.1, "relative": -0.2, "significant": True},
                {"run": "c", "status": "compared", "delta": -0.1, "relative": -0.2, "significant": True},
            ],
        }
    ]
    results = evaluate([rule], rows, lambda row, i: "")
    assert [r.run for r in results] == ["c"]
