"""Gating rules: when a comparison should fail the build (exit code 1).

A rule reads `METRIC[@SLICE] OP THRESHOLD[&THRESHOLD...][:significant]`, the same in `--fail-on` and in the config's
`gates:` list. It is checked on every candidate run's change against the baseline (delta = candidate - baseline, in
the metric's own units, whatever its direction):

  METRIC     a metric name: accuracy, macro_f1, micro_f1, exact_match, token_f1, rouge_l, loss, perplexity
  @SLICE     a slice expression (evaluate/slices.py): `key=value` one slice; `a=x&b=y` the rows with both tags;
             `key=*` every value of that key, each checked on its own; `a=*&b=*` every combination; no @SLICE: the
             whole eval set. A value holding `<` or `>` is written in double quotes.
  OP         <  <=  >  >=   (fail when `delta OP threshold` holds)
  THRESHOLD  -0.02    absolute change in the metric's units (accuracy 0.02 = 2 points)
             -2pts    points, i.e. hundredths (-2pts = -0.02)
             -5%      relative change, in percent of the baseline's value
             several joined by `&` must all hold (an absolute AND a relative drop)
  :significant  fail only when the change is also statistically significant (`:sig` for short): its q-value, the
                p-value adjusted across all slices of the comparison (compare/fdr.py), is under 1 - confidence

Examples::

    macro_f1@source=synthetic<-0.02        synthetic macro-F1 fell by more than 2 points
    accuracy<-1pts:significant             accuracy fell by over a point, and not by chance
    macro_f1@source=*<-2pts&-5%            any source's macro-F1 fell by over 2 points and over 5 %
    macro_f1@source=human&origin=imdb<-2pts   human IMDb rows' macro-F1 fell by over 2 points
    accuracy@source=*&origin=*<-2pts       any source × origin combination fell by over 2 points
    loss>0.05                              loss rose by more than 0.05

A rule on a wildcard slice names the slice that failed (`accuracy@domain=* FAILED on domain=banking for b: …`).
Several rules fail independently (any failing rule fails the build): that is the "or".
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Problem, VerifilyError
from ..evaluate.metrics import ALL_METRICS
from ..evaluate.slices import SliceExpr, SliceSyntaxError, scan_expression
from ..tags import slice_label

SYNTAX = "METRIC[@SLICE] OP THRESHOLD[&THRESHOLD][:significant], e.g. macro_f1@source=synthetic<-0.02"
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_METRIC = re.compile(r"\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*")
_TAIL = re.compile(r"(?P<op><=|>=|<|>)\s*(?P<thresholds>[^:]+?)\s*(?::\s*(?P<flag>[A-Za-z]+)\s*)?$")
_THRESHOLD = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>%|pts?|)$")
SIGNIFICANT_FLAGS = ("significant", "sig")


@dataclass(frozen=True)
class Threshold:
    value: float  # absolute: metric units; relative: percent
    relative: bool

    def text(self) -> str:
        return f"{self.value:+g}%" if self.relative else f"{self.value:+g}"


@dataclass(frozen=True)
class Rule:
    text: str
    metric: str
    slice: SliceExpr | None  # None: the whole eval set
    op: str
    thresholds: tuple[Threshold, ...]
    significant_only: bool
    origin: str = "--fail-on"

    def matches(self, key: Mapping[str, str]) -> bool:
        return not key if self.slice is None else self.slice.matches(key)

    def holds(self, delta: float, relative: float | None) -> bool:
        """Whether the change meets every threshold (a relative one cannot when the baseline is 0)."""
        fn = OPS[self.op]
        for t in self.thresholds:
            if t.relative:
                if relative is None or not fn(relative * 100.0, t.value):
                    return False
            elif not fn(delta, t.value):
                return False
        return True


@dataclass
class GateResult:
    rule: Rule
    run: str
    slice: dict[str, str]
    checked: bool  # False: the slice is missing in the baseline or this run
    failed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.text,
            "origin": self.rule.origin,
            "run": self.run,
            "slice": self.slice,
            "checked": self.checked,
            "failed": self.failed,
            "message": self.message,
        }


class GateRuleError(VerifilyError):
    """A rule that does not parse or names a slice no run has: the user's to fix, never a baseline's fault."""


def _bad(text: str, why: str, origin: str) -> VerifilyError:
    return GateRuleError(
        f"bad gate rule {text!r} ({origin}): {why}",
        hint=f"write {SYNTAX}; see `verifily compare --help`",
    )


def parse_rule(text: str, origin: str = "--fail-on") -> Rule:
    """Parse one rule; a VerifilyError says what is wrong with it (a slice's error, where in the rule)."""
    m = _METRIC.match(text)
    pos = m.end() if m else 0
    expr = None
    if m and pos < len(text) and text[pos] == "@":
        try:
            expr, pos = scan_expression(text, pos + 1, stop="<>", origin=origin)
        except SliceSyntaxError as e:
            raise GateRuleError(
                f"bad gate rule {text!r} ({origin}): its slice: {e.why} at position {e.position}",
                problems=e.problems,
                hint=f"write {SYNTAX}; a slice is {e.hint.removeprefix('write ') if e.hint else 'key=value'}",
            ) from None
    tail = _TAIL.match(text, pos) if m else None
    if not m or not tail:
        raise _bad(text, "it does not read METRIC[@SLICE] OP THRESHOLD", origin)
    metric = m["metric"]
    if metric not in ALL_METRICS:
        import difflib

        close = difflib.get_close_matches(metric, ALL_METRICS, n=1, cutoff=0.5)
        why = f"unknown metric {metric!r}" + (f" (did you mean {close[0]}?)" if close else "")
        raise _bad(text, why + f"; metrics: {', '.join(ALL_METRICS)}", origin)
    thresholds = []
    for part in tail["thresholds"].split("&"):
        tm = _THRESHOLD.match(part.strip())
        if not tm:
            raise _bad(text, f"{part.strip()!r} is not a number, Npts or N%", origin)
        num, unit = float(tm["num"]), tm["unit"]
        thresholds.append(Threshold(num / 100.0 if unit.startswith("pt") else num, unit == "%"))
    flag = tail["flag"]
    if flag is not None and flag.lower() not in SIGNIFICANT_FLAGS:
        raise _bad(text, f"unknown flag :{flag} (only :significant)", origin)
    return Rule(text.strip(), metric, expr, tail["op"], tuple(thresholds), flag is not None, origin)


def parse_rules(texts: Sequence[str], origin: str = "--fail-on") -> list[Rule]:
    return [parse_rule(t, origin) for t in texts]


def check_rules_apply(rules: Sequence[Rule], rows: Sequence[Mapping[str, Any]]) -> None:
    """A rule whose slice no run has (a value no row carries, a combination no row has) is a user error: a typo
    would otherwise pass silently."""
    problems = []
    for rule in rules:
        if rule.slice is None:
            continue
        mine = [r for r in rows if r["metric"] == rule.metric and rule.matches(r["slice"])]
        if any(v["n"] for r in mine for v in r["values"]):
            continue
        known = []
        for k in rule.slice.keys:
            values = sorted({r["slice"][k] for r in rows if k in r["slice"] and any(v["n"] for v in r["values"])})
            known.append(f"values of {k}: {', '.join(values) or '(none)'}")
        problems.append(
            Problem(
                f"rule {rule.text!r} ({rule.origin}): no run has the slice {rule.slice.text}",
                hint="; ".join(known),
            )
        )
    if problems:
        raise GateRuleError(f"{len(problems)} gate rule(s) name a slice that does not exist", problems=problems)


def evaluate(
    rules: Sequence[Rule], rows: Sequence[Mapping[str, Any]], describe: Callable[[Mapping[str, Any], int], str]
) -> list[GateResult]:
    """Check every rule on every matching row and candidate run. `describe(row, i)` renders the change of the
    i-th candidate in a row for the message (summary.change_text)."""
    results: list[GateResult] = []
    for rule in rules:
        for row in rows:
            if row["metric"] != rule.metric or not rule.matches(row["slice"]):
                continue
            for i, d in enumerate(row["deltas"]):
                if rule.origin.startswith("config of ") and rule.origin != f"config of {d['run']}":
                    continue  # a run's own config gates apply to that run only
                if d["status"] != "compared":
                    results.append(
                        GateResult(
                            rule,
                            d["run"],
                            dict(row["slice"]),
                            False,
                            False,
                            f"{rule.text}: not checked on {slice_label(row['slice'])} for {d['run']}: "
                            f"{d['status'].replace('_', ' ')}",
                        )
                    )
                    continue
                failed = rule.holds(d["delta"], d.get("relative"))
                if failed and rule.significant_only and not d["significant"]:
                    failed = False
                verdict = "FAILED" if failed else "passed"
                # a wildcard rule checks many slices: say which one this is
                on = f" on {slice_label(row['slice'])}" if rule.slice is not None and rule.slice.wildcard else ""
                results.append(
                    GateResult(
                        rule,
                        d["run"],
                        dict(row["slice"]),
                        True,
                        failed,
                        f"{rule.text} {verdict}{on} for {d['run']}: {describe(row, i)}",
                    )
                )
    return results
