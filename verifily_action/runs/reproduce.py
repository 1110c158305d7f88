"""`verifily reproduce RUN`: retrain a run from its recorded config and dataset into a new run, evaluate it the same
way, and compare every metric with the original's within a tolerance (0 by default: on CPU with the same seed a
reproduction is exact). Also reports whether the adapter weights are bit-identical and whether the run keys (same
data, config, base model and verifily version) agree.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..yamlsource import load_yaml
from .files import read_json
from .layout import ADAPTER_WEIGHTS, CONFIG, PREDICTIONS, RUN_META, eval_dir, eval_names, eval_results
from .results import load_eval_results
from .verify import verify_run

Echo = Callable[[str], None]


@dataclass
class MetricCheck:
    eval_name: str
    slice: dict[str, str]
    metric: str
    original: float
    reproduced: float | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class ReproReport:
    original: Path
    reproduction: Path
    tolerance: float
    same_run_key: bool
    same_weights: bool
    checks: list[MetricCheck] = field(default_factory=list)
    changed_predictions: dict[str, int] = field(default_factory=dict)  # eval name -> examples predicted differently

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": str(self.original),
            "reproduction": str(self.reproduction),
            "tolerance": self.tolerance,
            "ok": self.ok,
            "same_run_key": self.same_run_key,
            "same_weights": self.same_weights,
            "changed_predictions": self.changed_predictions,
            "checks": [c.to_dict() for c in self.checks],
        }


def _evals(run_dir: Path) -> list[dict[str, Any]]:
    return [load_eval_results(eval_results(run_dir, name)) for name in eval_names(run_dir)]


MetricKey = tuple[tuple[tuple[str, str], ...], str]  # (sorted slice pairs, metric)


def _metric_map(results: dict[str, Any]) -> dict[MetricKey, float]:
    out: dict[MetricKey, float] = {((), m): float(v["value"]) for m, v in (results.get("overall") or {}).items()}
    for s in results.get("slices", []):
        key = tuple(sorted((s.get("key") or {}).items()))
        for m, v in (s.get("metrics") or {}).items():
            out[(key, m)] = float(v["value"])
    return out


def _predictions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        # pretrain predicts nothing: its rows' loss is what a reproduction must give again; dpo: each pair's margin
        rows = map(json.loads, filter(str.strip, f))
        return {str(r["id"]): str(r.get("margin", r.get("prediction", r.get("loss")))) for r in rows}


def _sha(path: Path) -> str | None:
    from ..hashing import sha256_file

    return sha256_file(path) if path.is_file() else None


def reproduce(
    run_dir: str | Path,
    *,
    tolerance: float = 0.0,
    output_dir: str | Path | None = None,
    run_name: str | None = None,
    datasets_root: str | None = None,
    echo: Echo = print,
) -> ReproReport:
    """Retrain `run_dir` into a new run (`<name>-repro` beside it), evaluate it like the original, compare."""
    import yaml

    from ..evaluate.runner import EvalOptions, evaluate_run
    from ..train.job import train
    from ..train.plan import TrainOptions

    original = Path(run_dir)
    report = verify_run(original, datasets_root, inputs=False)
    if not report.ok:
        raise VerifilyError(
            f"run {original} fails its hash check: a reproduction of a changed run proves nothing",
            problems=report.problems,
            hint=f"see `verifily reproduce --verify-only {original}`",
        )
    meta = read_json(original / RUN_META)
    cfg = load_yaml(original / CONFIG, "run config")
    evals = _evals(original)
    if not evals:
        raise VerifilyError(
            f"run {original} has no eval results to compare a reproduction with",
            hint=f"evaluate it first: `verifily eval --run {original}`",
        )
    name = run_name or f"{original.resolve().name}-repro"
    cfg["run_name"] = name
    cfg["output_dir"] = str(Path(output_dir).resolve() if output_dir else original.resolve().parent)
    with tempfile.TemporaryDirectory(prefix="verifily-repro-") as tmp:
        config_path = Path(tmp) / CONFIG
        config_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        echo(f"retraining {original} as {Path(cfg['output_dir']) / name}")
        result = train(TrainOptions(config=config_path, datasets_root=datasets_root, force=True), echo=echo)
    new = result.run_dir
    new_meta = result.meta
    out = ReproReport(
        original=original.resolve(),
        reproduction=new,
        tolerance=tolerance,
        same_run_key=new_meta.get("run_key") == meta.get("run_key"),
        same_weights=False,
    )
    weights = _sha(original / ADAPTER_WEIGHTS)
    out.same_weights = weights is not None and weights == _sha(new / ADAPTER_WEIGHTS)
    for res in evals:
        ds = res["dataset"]
        slice_keys = [s.get("key") or {} for s in res.get("slices", [])]
        keys = list(dict.fromkeys(k for key in slice_keys if len(key) == 1 for k in key))
        cross = [key for key in slice_keys if len(key) > 1]
        echo(f"evaluating the reproduction on {res['eval_name']}")
        outcome = evaluate_run(
            new,
            EvalOptions(
                dataset=ds["ref"],
                split=ds["split"],
                slice_by=keys,
                cross=cross,
                datasets_root=datasets_root,
                seed=int(res.get("seed", 0)),
            ),
        )
        mine, theirs = _metric_map(res), _metric_map(outcome.results)
        for (key, metric), value in sorted(mine.items()):
            got = theirs.get((key, metric))
            ok = got is not None and abs(got - value) <= tolerance
            out.checks.append(MetricCheck(res["eval_name"], dict(key), metric, value, got, ok))
        a = _predictions(eval_dir(original, res["eval_name"]) / PREDICTIONS)
        b = _predictions(outcome.eval_dir / PREDICTIONS)
        out.changed_predictions[res["eval_name"]] = sum(1 for k, v in a.items() if b.get(k) != v)
    return out
