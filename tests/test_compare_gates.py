"""Gate rules: the syntax, clear errors on bad rules, and when a rule fails."""

from __future__ import annotations

import pytest

from verifily_action.compare.gates import Threshold, evaluate, parse_rule
from verifily_action.errors import VerifilyError

pytestmark = pytest.mark.unit


def test_parse_full_rule():
    r = parse_rule("macro_f1@source=synthetic<-0.02")
    assert (r.metric, r.slice.text, r.op) == ("macro_f1", "source=synthetic", "<")
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
    assert [(t.key, t.value) for t in r.slice.terms] == [("origin", "imdb v1.2")]
    assert parse_rule('accuracy@origin="a<b"<-0.01').slice.terms[0].value == "a<b"  # quoted: < is data


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("macro_f1", "does not read"),
        ("macro-f1<-0.02", "does not read"),
        ("f1<-0.02", "unknown metric 'f1'"),
        ("acuracy<-0.02", "did you mean accuracy"),
        ("accuracy<-two", "not a number"),
        ("accuracy<-0.02:often", "unknown flag"),
        ("accuracy@<-0.02", "its slice: the expression is empty at position 10"),
        ("accuracy@source=human&<-0.02", "its slice: a term is missing after '&' at position 22"),
        ("accuracy@source=human & origin=imdb & <-2pts", "a term is missing after '&' at position 37"),
        ("accuracy@sour ce=x<-0.02", "its slice: expected '=' or '&' after the key 'sour' at position 15"),
        ("accuracy@source=human&source=x<0", "the key 'source' appears twice at position 23"),
    ],
)
def test_bad_rules_are_clear(text, says):
    with pytest.raises(VerifilyError) as exc:
        parse_rule(text, origin="config of b")
    assert says in exc.value.message
    assert "config of b" in exc.value.message
    assert "METRIC" in (exc.value.hint or "")


def test_cross_and_wildcard_slices_in_rules():
    r = parse_rule("macro_f1@source=human&origin=imdb<-2pts")
    assert [(t.key, t.value) for t in r.slice.terms] == [("source", "human"), ("origin", "imdb")]
    assert r.thresholds == (Threshold(-0.02, False),)
    wild = parse_rule("accuracy@source=*&origin=*<-2pts&-5%:sig")
    assert wild.slice.wildcard and wild.slice.keys == ["source", "origin"] and wild.significant_only
    assert [t.relative for t in wild.thresholds] == [False, True]
    assert parse_rule("accuracy@source×origin<0").slice.same(wild.slice)
    assert parse_rule("accuracy@source<-0.02").slice.text == "source"  # a bare key is every value


def test_a_bad_slice_in_a_rule_shows_where():
    with pytest.raises(VerifilyError) as exc:
        parse_rule("macro_f1@source=human &<-2pts")
    lines = exc.value.render().splitlines()
    assert lines[1:3] == ["  macro_f1@source=human &<-2pts", "  " + " " * 22 + "^"]
    assert exc.value.exit_code == 2


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
    # a wildcard rule's message names the slice it checked; a fixed rule's text already does
    assert wild[1].message == "accuracy@source=*<0 FAILED on source=synthetic for b: change"
    assert _check("accuracy@source=synthetic<0", rows)[0].message == "accuracy@source=synthetic<0 FAILED for b: change"


def test_cross_slice_selectors():
    rows = [
        _row({"source": "human"}, "accuracy", -0.1, -0.2, True),
        _row({"source": "human", "origin": "imdb"}, "accuracy", -0.05, -0.1, True),
        _row({"source": "human", "origin": "yelp"}, "accuracy", 0.01, 0.02, False),
        _row({"source": "synthetic", "origin": "fewgen"}, "accuracy", -0.03, -0.04, True),
    ]
    fixed = _check("accuracy@source=human&origin=imdb<-2pts", rows)
    assert [(r.slice, r.failed) for r in fixed] == [({"source": "human", "origin": "imdb"}, True)]
    # the terms' order does not matter
    assert [r.slice for r in _check("accuracy@origin=imdb&source=human<0", rows)] == [fixed[0].slice]
    wild = _check("accuracy@source=*&origin=*<-2pts", rows)
    assert [(r.slice, r.failed) for r in wild] == [
        ({"source": "human", "origin": "imdb"}, True),
        ({"source": "human", "origin": "yelp"}, False),
        ({"source": "synthetic", "origin": "fewgen"}, True),
    ]
    assert [r.message.split(":")[0] for r in wild if r.failed] == [
        "accuracy@source=*&origin=*<-2pts FAILED on source=human&origin=imdb for b",
        "accuracy@source=*&origin=*<-2pts FAILED on source=synthetic&origin=fewgen for b",
    ]
    half = _check("accuracy@source=human&origin=*<0", rows)
    assert [r.slice["origin"] for r in half] == ["imdb", "yelp"]


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
