"""Read what `compare` needs from run folders: run_meta.json, config.yaml's gates, and one evaluation's
eval_results.json + predictions.jsonl. Only json, yaml and numpy: never torch, transformers or `datasets`, so a
comparison runs anywhere a run folder was downloaded (the Action compares against a baseline artifact).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Problem, VerifilyError
from ..evaluate import metrics as task_metrics
from ..runs.layout import CONFIG, EVAL_RESULTS, PREDICTIONS, RUN_META, eval_dir, eval_names
from ..runs.results import load_eval_results
from ..tags import slice_label, tag_value
from .paired import Outcomes


@dataclass
class EvalRun:
    """One run and one of its evaluations, with the per-example records of that evaluation."""

    dir: Path
    name: str  # shown in tables: the folder name (made unique among the compared runs)
    meta: dict[str, Any]
    eval_name: str
    results: dict[str, Any]
    ids: list[str]
    tags: list[dict[str, Any]]
    references: list[str]
    predictions: list[str]
    losses: list[float | None]
    gates: list[str] = field(default_factory=list)  # the run config's `gates`
    tokens: list[int] | None = None  # pretrain: each document's scored tokens (the weight of its loss)
    margins: list[float] | None = None  # dpo: each pair's reward margin (evaluate/preference.py)
    _scores: dict[str, np.ndarray] | None = None

    @property
    def task(self) -> str:
        return str(self.results.get("task") or self.meta.get("task"))

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def dataset_ref(self) -> str | None:
        ds = self.results.get("dataset") or {}
        return ds.get("ref")

    def has_losses(self) -> bool:
        return bool(self.losses) and all(x is not None for x in self.losses)

    def outcomes(self, idx: np.ndarray | None = None, label_scope: str = "all_labels") -> Outcomes:
        """The examples `idx` (default all); `label_scope`: the labels their macro-F1 averages over."""
        if self._scores is None:
            self._scores = task_metrics.per_example_scores(
                self.task,
                self.references,
                self.predictions,
                self.losses if self.has_losses() else None,
                self.tokens,
                self.margins,
            )
        out = Outcomes(self._scores, self.references, self.predictions, label_scope)
        return out if idx is None else out.subset(idx)

    @property
    def slice_macro_f1(self) -> str:
        """The labels its eval averaged a slice's macro-F1 over (files from before it was recorded: all_labels)."""
        return str(self.results.get("slice_macro_f1") or "all_labels")

    def tag_values(self, key: str) -> np.ndarray:
        return np.array([tag_value(t, key) for t in self.tags], dtype=object)


def _read_json(path: Path, what: str) -> Any:
    from ..yamlsource import regular_only  # a FIFO or device in a run folder is refused, never read

    try:
        with open(path, encoding="utf-8", opener=regular_only) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise VerifilyError(f"cannot read {what} {path}: {e}", hint="the run folder is damaged; evaluate again") from e


def read_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The run folder and its run_meta.json; a clear error when `path` is not a completed run."""
    d = Path(path)
    if not d.exists():
        raise VerifilyError(f"{d} does not exist", hint="give the folder of a run written by `verifily train`")
    if not d.is_dir():
        raise VerifilyError(f"{d} is not a folder", hint=f"give the folder of a run (it holds {RUN_META})")
    meta_path = d / RUN_META
    if not meta_path.is_file():
        raise VerifilyError(
            f"{d} is not a run folder (no {RUN_META})",
            hint="give the folder of a run written by `verifily train` (e.g. runs/<name>/)",
        )
    meta = _read_json(meta_path, "run metadata")
    if not isinstance(meta, dict):
        raise VerifilyError(f"{meta_path} is not a JSON object", hint="the run folder is damaged")
    if meta.get("status") != "completed":
        raise VerifilyError(
            f"run {d} is not completed (status {meta.get('status')!r})",
            hint="compare finished runs only; resume or retrain this one",
        )
    return d, meta


def choose_evals(dirs: Sequence[Path], wanted: str | None) -> list[str]:
    """The eval name to read in each run: `wanted`, else the one evaluation all runs share, else each run's only
    one (runs evaluated on different dataset versions), else a clear error asking for --eval."""
    found = {d: eval_names(d) for d in dirs}
    missing = [d for d, names in found.items() if not names]
    if missing:
        raise VerifilyError(
            f"{len(missing)} run(s) have no eval results",
            problems=[Problem(f"no eval/*/{EVAL_RESULTS} in this run", file=str(d)) for d in missing],
            hint="evaluate each run first: `verifily eval --run <run folder>`",
        )
    if wanted:
        lacking = [d for d, names in found.items() if wanted not in names]
        if lacking:
            raise VerifilyError(
                f"no evaluation named {wanted!r} in {len(lacking)} run(s)",
                problems=[Problem(f"has: {', '.join(found[d])}", file=str(d)) for d in lacking],
                hint="--eval takes the folder name under <run>/eval/, e.g. ds_demo@v1-eval",
            )
        return [wanted] * len(dirs)
    common = set.intersection(*(set(v) for v in found.values()))
    if len(common) == 1:
        return [next(iter(common))] * len(dirs)
    if not common and all(len(v) == 1 for v in found.values()):
        return [found[d][0] for d in dirs]
    raise VerifilyError(
        "the runs have several evaluations; say which to compare",
        problems=[Problem(f"evaluations: {', '.join(found[d])}", file=str(d)) for d in dirs],
        hint="pass --eval NAME (a folder name under <run>/eval/" + (f", e.g. {sorted(common)[0]})" if common else ")"),
    )


def _read_predictions(path: Path, task: str) -> list[dict[str, Any]]:
    if not path.is_file():
        raise VerifilyError(
            f"{path} is missing: compare needs the per-example predictions",
            hint=f"evaluate the run again with `verifily eval` (it writes {PREDICTIONS})",
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise VerifilyError(f"{path}:{lineno}: not valid JSON: {e}", hint="evaluate the run again") from e
            # pretrain scores documents: a row holds the document's loss and tokens, no reference or prediction
            # dpo: a pair's reward margin is its score (the reference and prediction say chosen / rejected)
            need = {"pretrain": ("id", "tokens", "loss"), "dpo": ("id", "reference", "prediction", "margin")}.get(
                task, ("id", "reference", "prediction")
            )
            if not isinstance(row, dict) or not set(need) <= set(row):
                raise VerifilyError(
                    f"{path}:{lineno}: a prediction row needs {', '.join(need[:-1])} and {need[-1]}",
                    hint="evaluate the run again with this version of verifily",
                )
            problem = _row_problem(row)
            if problem:
                raise VerifilyError(f"{path}:{lineno}: {problem}", hint="evaluate the run again with this version")
            rows.append(row)
    if not rows:
        raise VerifilyError(f"{path} holds no predictions", hint="evaluate the run again")
    return rows


def _row_problem(row: dict[str, Any]) -> str | None:
    """A prediction row's value of the wrong type (the run may come from someone else: a fork's artifact)."""
    tags, loss = row.get("tags"), row.get("loss")
    if tags is not None and not isinstance(tags, dict):
        return f"`tags` must be an object (tag key -> value), not {type(tags).__name__}"
    if loss is not None and (isinstance(loss, bool) or not isinstance(loss, int | float)):
        return f"`loss` must be a number or null, not {type(loss).__name__}"
    tokens = row.get("tokens", 1)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        return f"`tokens` must be a positive integer, not {tokens!r}"
    margin = row.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin):
        return f"`margin` must be a finite number, not {margin!r}"
    return None


def config_gates(run_dir: Path) -> list[str]:
    """The `gates` of the run's config.yaml (empty when it has no config.yaml or no gates). A config.yaml that
    cannot be read safely (see yamlsource), or gates that are not strings, is an error naming the file."""
    from ..yamlsource import load_yaml

    path = run_dir / CONFIG
    if not path.is_file():
        return []
    cfg = load_yaml(path, "run config")
    gates = cfg.get("gates") if isinstance(cfg, dict) else None
    if gates is None:
        return []
    if not isinstance(gates, list) or not all(isinstance(g, str) for g in gates):
        raise VerifilyError(
            f"{path}: gates must be a list of rule strings",
            problems=[Problem("gates is not a list of strings", file=str(path), json_path="$.gates")],
            hint="the run folder's config.yaml was edited: train the run again",
        )
    return list(gates)


def load_eval_run(run_dir: Path, meta: dict[str, Any], eval_name: str, name: str) -> EvalRun:
    edir = eval_dir(run_dir, eval_name)
    results = load_eval_results(edir / EVAL_RESULTS)
    predictions = results["files"]["predictions"]
    if Path(predictions).name != predictions or predictions in (".", ".."):  # nowhere else on the machine
        raise VerifilyError(
            f"{edir / EVAL_RESULTS}: files.predictions must name a file beside it, not {predictions!r}",
            hint="evaluate the run again with this version of verifily",
        )
    pretrain = results.get("task") == "pretrain"
    rows = _read_predictions(edir / predictions, str(results.get("task")))
    return EvalRun(
        dir=run_dir,
        name=name,
        meta=meta,
        eval_name=eval_name,
        results=results,
        ids=[str(r["id"]) for r in rows],
        tags=[r.get("tags") or {} for r in rows],
        # pretrain: a document's "reference" is its token count, so pairing (engine.pair) sees changed documents
        references=[str(r["tokens"] if pretrain else r["reference"]) for r in rows],
        predictions=["" if pretrain else str(r["prediction"]) for r in rows],
        losses=[r.get("loss") for r in rows],
        gates=config_gates(run_dir),
        tokens=[int(r["tokens"]) for r in rows] if pretrain else None,
        margins=[float(r["margin"]) for r in rows] if results.get("task") == "dpo" else None,
    )


def _names(dirs: Sequence[Path]) -> list[str]:
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    # Same folder name in different places: add the parent folder, then fall back to the index.
    names = [f"{d.resolve().parent.name}/{d.resolve().name}" for d in dirs]
    return names if len(set(names)) == len(names) else [f"{i + 1}:{n}" for i, n in enumerate(names)]


def load_runs(paths: Sequence[str | Path], eval_name: str | None = None) -> list[EvalRun]:
    """Every run to compare (the first is the baseline), each with the chosen evaluation. Errors: fewer than two
    runs, a folder that is not a completed run, missing eval results or predictions, runs of different tasks."""
    if len(paths) < 2:
        raise VerifilyError(
            f"compare needs at least two runs, got {len(paths)}",
            hint="pass --runs BASELINE/,CANDIDATE/ (comma-separated; the first is the baseline)",
        )
    read = [read_meta(p) for p in paths]
    dirs = [d for d, _ in read]
    evals = choose_evals(dirs, eval_name)
    names = _names(dirs)
    runs = [load_eval_run(d, meta, e, n) for (d, meta), e, n in zip(read, evals, names, strict=True)]
    tasks = sorted({r.task for r in runs})
    if len(tasks) > 1:
        raise VerifilyError(
            f"the runs have different tasks ({', '.join(tasks)}): their metrics cannot be compared",
            problems=[Problem(f"task {r.task}", file=str(r.dir)) for r in runs],
            hint="compare runs of the same task",
        )
    return runs


def choose_metrics(runs: Sequence[EvalRun], requested: Sequence[str] | None) -> list[str]:
    """`requested` (checked against the task and the data), else the baseline's reported metrics that every run
    can compute."""
    task = runs[0].task
    allowed = task_metrics.allowed_metrics(task)
    no_loss = [r for r in runs if not r.has_losses()]
    if requested:
        for m in requested:
            if m not in allowed:
                close = difflib.get_close_matches(m, allowed, n=1, cutoff=0.5)
                raise VerifilyError(
                    f"metric {m!r} does not exist for {task} runs",
                    hint=(f"did you mean {close[0]}? " if close else "") + f"{task} metrics: {', '.join(allowed)}",
                )
            if m in ("loss", "perplexity") and no_loss:
                raise VerifilyError(
                    f"metric {m} needs a loss per example, which these runs lack",
                    problems=[Problem(f"{PREDICTIONS} has no loss", file=str(r.dir)) for r in no_loss],
                )
        return list(dict.fromkeys(requested))
    base = [m for m in runs[0].results.get("metrics", []) if m in allowed]
    out = [m for m in base if not (m in ("loss", "perplexity") and no_loss)]
    return out or list(task_metrics.DEFAULT_METRICS[task][:1])


def default_slicing(runs: Sequence[EvalRun]) -> list[str]:
    """The slice expressions the runs' evaluations used (eval_results.json `slicing`; for results written before it
    was recorded, the keys of their single-key slices and their cross slices as they were), first seen first."""
    out: list[str] = []
    for r in runs:
        recorded = r.results.get("slicing")
        if recorded is None:
            keys = [s.get("key") or {} for s in r.results.get("slices", [])]
            recorded = [next(iter(k)) if len(k) == 1 else slice_label(k) for k in keys if k]
        for e in recorded:
            if e not in out:
                out.append(e)
    return out
