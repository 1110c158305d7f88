"""The Action's stages, wired to the package: train (or reuse the cached run) -> evaluate -> compare and render.

`action.flow` runs the GitHub side (event, baseline, comment, summary, artifact, outputs) and calls these through
`flow.PIPELINE`, so its tests can substitute a stub. The markdown comes from `report/`, whose one escaper makes
every text from data inert (a tag value like `@org/team` or `<img>` must not ping anyone or inject HTML).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..runs import layout
from .inputs import Inputs, fail_on_rules

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


class Pipeline:
    """train / evaluate / compare for `action.train_eval` and `action.comment_mode` (tests substitute a stub)."""

    def __init__(self) -> None:
        self._cached: set[Path] = set()  # run folders the train stage reused instead of training

    def check(self, run_dir: Path) -> None:
        """A downloaded run folder (a fork's artifact, in the comment job) read as `compare` reads a run: its
        run_meta.json, and each evaluation's eval_results.json (against its schema) and predictions.jsonl. Raises
        VerifilyError naming the first problem, so nothing later meets a value of the wrong type."""
        from ..compare.loading import load_eval_run, read_meta

        _, meta = read_meta(run_dir)
        names = layout.eval_names(run_dir)
        if not names:
            raise VerifilyError(f"run {run_dir} has no evaluation", hint="the evaluate stage writes eval/*/")
        for name in names:
            load_eval_run(run_dir, meta, name, run_dir.name)

    def validate(self, config: Path) -> None:
        from ..config import load_config

        load_config(config)

    def train(self, inputs: Inputs) -> Path:
        """Train (or reuse the completed run with the same run key in the config's output_dir)."""
        from ..train.job import train
        from ..train.plan import TrainOptions

        res = train(TrainOptions(config=Path(inputs.config), dataset=inputs.dataset), echo=print)
        if res.cached:
            self._cached.add(res.run_dir.resolve())
        return res.run_dir

    def evaluate(self, run_dir: Path, inputs: Inputs) -> Path | None:
        """Evaluate on the run's eval split, sliced by the `slice-by` input (default: the config's eval.slice_by);
        returns the eval folder. A cached run that already holds this evaluation is not evaluated again."""
        from ..config import load_config
        from ..evaluate.runner import EvalOptions, evaluate_run

        slice_by = list(inputs.slice_by) or None
        # eval.slices is not part of the run key: a cached run is sliced as the config says now
        cfg = load_config(Path(inputs.config))
        cross = list(cfg.eval.slices)
        done = reusable_eval(run_dir, slice_by, cross) if run_dir.resolve() in self._cached else None
        if done is not None:
            print(f"reusing the cached run's evaluation {done.name} (same run key, same slices)")
        else:
            out = evaluate_run(run_dir, EvalOptions(slice_by=slice_by, cross=cross))
            overall = ", ".join(f"{m} {v['value']:.3f}" for m, v in out.results["overall"].items())
            print(f"evaluated {out.results['eval_name']} (n={out.results['n']}): {overall}")
            done = out.eval_dir
        if cfg.attribute.method != "none":
            attribute(run_dir, cfg.attribute, slice_by)
        return done

    def compare(self, run_dir: Path, baseline_dir: Path | None, inputs: Inputs) -> Outcome:
        """Compare with the baseline run folder (None: report this run's own metrics) and render markdown."""
        from ..compare.loading import config_gates
        from ..report import mermaid
        from ..report import results as run_report
        from ..runs.results import load_eval_results

        if baseline_dir is None:
            results_path = eval_results_path(run_dir)
            md = run_report.results_markdown(load_eval_results(results_path))
            if fail_on_rules(inputs.fail_on) or config_gates(run_dir):
                md += "\n- ➖ gates not checked: there is no baseline to compare with.\n"
            return Outcome(md, metrics_json=results_path)
        from ..compare import compare, failed_gates
        from ..report import comparison as report

        comparison = compare(
            [baseline_dir, run_dir],
            slice_by=list(inputs.slice_by) or None,
            fail_on=fail_on_rules(inputs.fail_on),
            discover=True,  # the comment names the combination of tags that regressed most
        )
        out = run_dir.parent / f"{run_dir.name}{COMPARISON_SUFFIX}"
        out.write_text(report.to_json(comparison), encoding="utf-8")
        results_path = layout.eval_results(run_dir, comparison["runs"][1]["eval_name"])
        md = report.markdown(comparison) + mermaid.chart(comparison)
        md += run_report.failure_breakdown(load_eval_results(results_path))
        failed = failed_gates(comparison)
        message = f"{len(failed)} gate rule(s) failed: " + "; ".join(g["message"] for g in failed) if failed else ""
        return Outcome(
            md,
            comparison_json=out,
            metrics_json=results_path,
            regressions=regressions(comparison),
            gate_failed=bool(failed),
            gate_message=message,
        )


# ---------------------------------------------------------------- helpers


def eval_results_path(run_dir: Path) -> Path:
    """The run's evaluation (the newest when it holds several)."""
    found = layout.latest_eval_results(run_dir)
    if found is None:
        raise VerifilyError(f"run {run_dir} has no evaluation", hint="the evaluate stage writes eval/*/")
    return found


def reusable_eval(run_dir: Path, slice_by: Sequence[str] | None, cross: Sequence[str] | None = None) -> Path | None:
    """The eval folder of a cached run when it already evaluated the run's eval dataset (same hash) with the same
    slice expressions; None when it has to be evaluated again. The run's hash chain was verified by the cache lookup."""
    from ..runs.folder import load_run
    from ..runs.results import load_eval_results

    run = load_run(run_dir, require_completed=True)
    ds = run.meta.get("eval_dataset") or run.meta.get("dataset") or {}
    path = layout.eval_results(run_dir, layout.eval_name(str(ds.get("ref")), run.config.eval_split))
    try:
        results = load_eval_results(path)
    except VerifilyError:
        return None
    from ..evaluate import slices

    by, more = slices.eval_slicing(run.config.eval, slice_by, cross)
    if results.get("slicing") != [e.text for e in slices.normalize(by, more)]:
        return None  # other slices (or results from before `slicing` was recorded): evaluate again
    if results["dataset"]["hash"] != ds.get("hash"):
        return None
    return path.parent


def regressions(comparison: Mapping[str, Any]) -> int:
    """Significant regressions: (slice, metric) cells whose change is significant (by its q-value, after
    false-discovery control across the slices: compare/fdr.py) and worse."""
    return sum(
        1
        for row in comparison["rows"]
        for d in row["deltas"]
        if d.get("status") == "compared" and d.get("significant") and not d.get("improved")
    )


def attribute(run_dir: Path, settings: Any, slice_by: Sequence[str] | None) -> None:
    """The config's `attribute:` after evaluation, so the comparison shows which data helped and hurt. A failure is
    a warning: the report goes out without that section."""
    from ..attribute.runner import AttributeOptions, attribute_run
    from ..github import workflow as wf

    opts = AttributeOptions(
        method=settings.method,
        by=list(settings.by),
        slice_by=list(slice_by) if slice_by else None,
        k=settings.k,
        jobs=settings.jobs,
        budget=settings.budget,
        seeds=settings.seeds,
    )
    try:
        result = attribute_run(run_dir, opts)
    except VerifilyError as e:
        wf.warning(f"attribution ({settings.method}) failed: {e.message}; the report has no 'Which data' section")
        return
    print(f"attribution ({settings.method}) written: {result.folder.relative_to(run_dir.parent)}")
