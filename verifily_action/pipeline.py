"""The Action's stages, wired to the package: train (or reuse the cached run) -> evaluate -> compare and render.

`verifily_action.action` runs the GitHub side (event, baseline, comment, summary, artifact, outputs) and calls
these through `action.PIPELINE`, so its tests can substitute a stub. Everything shown in the comment that comes
from data (tag values, run and dataset names, sentences quoting them) passes through `github.comments.sanitize`
first: a tag value like `@org/team` or `<img>` must not ping anyone or inject HTML into the pull request.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .github.comments import sanitize

if TYPE_CHECKING:
    from .action import Inputs

COMPARISON_SUFFIX = ".comparison.json"


@dataclass
class Outcome:
    """What the compare stage hands back: the rendered report and the gate's verdict."""

    markdown: str
    comparison_json: Path | None = None
    metrics_json: Path | None = None
    regressions: int = 0
    gate_failed: bool = False
    gate_message: str = ""


def fail_on_rules(text: str | None) -> list[str]:
    """The `fail-on` input: one rule per line (commas also separate, as in YAML flow-style lists)."""
    return [r.strip() for r in re.split(r"[\n,]", text or "") if r.strip()]


def check_fail_on(text: str | None) -> None:
    """Parse the rules before any training, so a typo fails in seconds, not after the run."""
    from .compare.gates import parse_rules

    parse_rules(fail_on_rules(text), "input fail-on")


class Pipeline:
    """train / evaluate / compare for `action.train_eval` and `action.comment_mode` (tests substitute a stub)."""

    def __init__(self) -> None:
        self._cached: set[Path] = set()  # run folders the train stage reused instead of training

    def validate(self, config: Path) -> None:
        from .config import load_config

        load_config(config)

    def train(self, inputs: Inputs) -> Path:
        """Train (or reuse the completed run with the same run key in the config's output_dir)."""
        from .train.job import train
        from .train.plan import TrainOptions

        res = train(TrainOptions(config=Path(inputs.config), dataset=inputs.dataset), echo=print)
        if res.cached:
            self._cached.add(res.run_dir.resolve())
        return res.run_dir

    def evaluate(self, run_dir: Path, inputs: Inputs) -> Path | None:
        """Evaluate on the run's eval split, sliced by the `slice-by` input (default: the config's eval.slice_by);
        returns the eval folder. A cached run that already holds this evaluation is not evaluated again."""
        from .evaluate.runner import EvalOptions, evaluate_run

        slice_by = list(inputs.slice_by) or None
        if run_dir.resolve() in self._cached:
            done = reusable_eval(run_dir, slice_by)
            if done is not None:
                print(f"reusing the cached run's evaluation {done.name} (same run key, same slices)")
                return done
        out = evaluate_run(run_dir, EvalOptions(slice_by=slice_by))
        overall = ", ".join(f"{m} {v['value']:.3f}" for m, v in out.results["overall"].items())
        print(f"evaluated {out.results['eval_name']} (n={out.results['n']}): {overall}")
        return out.eval_dir

    def compare(self, run_dir: Path, baseline_dir: Path | None, inputs: Inputs) -> Outcome:
        """Compare with the baseline run folder (None: report this run's own metrics) and render markdown."""
        if baseline_dir is None:
            results_path = eval_results_path(run_dir)
            results = json.loads(results_path.read_text(encoding="utf-8"))
            md = results_markdown(results)
            if fail_on_rules(inputs.fail_on) or _config_gates(run_dir):
                md += "\n- ➖ gates not checked: there is no baseline to compare with.\n"
            return Outcome(md, metrics_json=results_path)
        from .compare import compare, failed_gates, render

        comparison = compare(
            [baseline_dir, run_dir],
            slice_by=list(inputs.slice_by) or None,
            fail_on=fail_on_rules(inputs.fail_on),
        )
        out = run_dir.parent / f"{run_dir.name}{COMPARISON_SUFFIX}"
        out.write_text(render.to_json(comparison), encoding="utf-8")
        md = render.markdown(inert(comparison)) + chart(comparison) + breakdown(run_dir, comparison)
        failed = failed_gates(comparison)
        message = f"{len(failed)} gate rule(s) failed: " + "; ".join(g["message"] for g in failed) if failed else ""
        candidate = comparison["runs"][1]["eval_name"]
        return Outcome(
            md,
            comparison_json=out,
            metrics_json=run_dir / "eval" / candidate / "eval_results.json",
            regressions=regressions(comparison),
            gate_failed=bool(failed),
            gate_message=message,
        )


# ---------------------------------------------------------------- helpers


def eval_results_path(run_dir: Path) -> Path:
    """The run's evaluation (the newest when it holds several)."""
    found = sorted((run_dir / "eval").glob("*/eval_results.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        from .errors import VerifilyError

        raise VerifilyError(f"run {run_dir} has no evaluation", hint="the evaluate stage writes eval/*/")
    return found[-1]


def reusable_eval(run_dir: Path, slice_by: Sequence[str] | None) -> Path | None:
    """The eval folder of a cached run when it already evaluated the run's eval dataset (same hash) with the same
    slice keys; None when it has to be evaluated again. The run's hash chain was verified by the cache lookup."""
    from . import runs

    run = runs.load_run(run_dir, require_completed=True)
    ds = run.meta.get("eval_dataset") or run.meta.get("dataset") or {}
    name = f"{ds.get('ref')}-{run.config.eval_split}"
    path = run_dir / "eval" / name / "eval_results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = list(slice_by) if slice_by is not None else list(run.config.eval.slice_by)
    keys = [list(s["key"]) for s in results.get("slices", [])]
    if any(len(k) != 1 for k in keys) or {k[0] for k in keys} != set(wanted):
        return None
    if (results.get("dataset") or {}).get("hash") != ds.get("hash"):
        return None
    return path.parent


def regressions(comparison: Mapping[str, Any]) -> int:
    """Significant regressions: (slice, metric) cells whose change is significant and worse."""
    return sum(
        1
        for row in comparison["rows"]
        for d in row["deltas"]
        if d.get("status") == "compared" and d.get("significant") and not d.get("improved")
    )


def _config_gates(run_dir: Path) -> list[str]:
    from .compare.loading import _config_gates as read

    return read(run_dir)


def inert(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose text from data is sanitized for markdown (the renderer escapes table syntax itself)."""
    c = copy.deepcopy(dict(comparison))

    def s(x: Any) -> str:
        return sanitize(x, max_len=None)

    def key(k: Mapping[str, str]) -> dict[str, str]:
        return {sanitize(a, max_len=100): sanitize(b, max_len=100) for a, b in k.items()}

    c["baseline"] = s(c["baseline"])
    for r in c["runs"]:
        r["name"] = s(r["name"])
    for row in c["rows"]:
        row["slice"] = key(row["slice"])
    c["summary"] = [s(x) for x in c.get("summary", [])]
    c["notes"] = [s(x) for x in c.get("notes", [])]
    for d in c.get("dataset_diffs", []):
        d["text"] = s(d["text"])
    for g in c.get("gates", []):
        g["message"] = s(g["message"])
        g["rule"] = str(g["rule"]).replace("`", "ˋ")  # shown in a code span: only a backtick could break out
    return c


def _label(text: str) -> str:
    """A Mermaid string literal: no quotes, backticks or line breaks can end it early."""
    return re.sub(r'["`\\\n\r]', "'", text)[:40]


def chart(comparison: Mapping[str, Any]) -> str:
    """A Mermaid bar chart of the first metric's change per slice (GitHub renders ```mermaid blocks)."""
    from .compare.summary import metric_name, slice_name

    metric = comparison["metrics"][0]
    bars = [
        (slice_name(r["slice"]), r["deltas"][0]["delta"])
        for r in comparison["rows"]
        if r["metric"] == metric and r["deltas"] and r["deltas"][0].get("status") == "compared"
    ]
    if len(bars) < 2:
        return ""
    points = metric not in ("loss", "perplexity")
    values = [round(v * 100, 2) if points else round(v, 4) for _, v in bars]
    unit = "points" if points else "change"
    labels = ", ".join(f'"{_label(n)}"' for n, _ in bars)
    return (
        f'\n```mermaid\nxychart-beta\n  title "Δ {metric_name(metric)} by slice ({unit})"\n'
        f'  x-axis [{labels}]\n  y-axis "Δ {unit}"\n  bar [{", ".join(f"{v:g}" for v in values)}]\n```\n'
    )


def breakdown(run_dir: Path, comparison: Mapping[str, Any], top: int = 3) -> str:
    """The candidate's failure breakdown: the tag values that gather more than their share of the failures."""
    path = run_dir / "eval" / comparison["runs"][1]["eval_name"] / "eval_results.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("failure_breakdown") or []
    except (OSError, ValueError):
        return ""
    over = [e for e in entries if e.get("share_of_failures", 0) > e.get("share_of_eval", 0)][:top]
    if not over:
        return ""
    return "\n**Where this run fails**\n\n" + "".join(f"- {sanitize(e['sentence'])}\n" for e in over)


def results_markdown(results: Mapping[str, Any]) -> str:
    """This run's own metrics per slice (no baseline to compare with)."""
    from .compare.summary import fmt_value, metric_name, slice_name

    metrics = list(results["metrics"])
    conf = round(float(results.get("confidence", 0.95)) * 100)

    def cell(m: str, v: Mapping[str, Any] | None) -> str:
        if not v:
            return "–"
        return f"{fmt_value(m, v['value'])} [{fmt_value(m, v['ci_low'])}, {fmt_value(m, v['ci_high'])}]"

    name = sanitize(results.get("eval_name", ""), table_cell=True)
    lines = [f"### This run on {name} (value [{conf}% CI])", ""]
    lines.append("| slice | n | " + " | ".join(metric_name(m) for m in metrics) + " |")
    lines.append("|:---|---:|" + "---:|" * len(metrics))
    lines.append(
        f"| overall | {results['n']} | " + " | ".join(cell(m, results["overall"].get(m)) for m in metrics) + " |"
    )
    for s in results.get("slices", []):
        label = sanitize(slice_name(s["key"]), table_cell=True) + (" †" if s.get("too_small") else "")
        lines.append(f"| {label} | {s['n']} | " + " | ".join(cell(m, s["metrics"].get(m)) for m in metrics) + " |")
    return "\n".join(lines) + "\n"
