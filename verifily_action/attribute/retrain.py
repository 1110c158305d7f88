"""Segment methods that retrain: leave-one-segment-out (`loo`) and exact segment Shapley (`segment-shapley`).

Each retrain is an ordinary run: the dataset version without some tag segments is derived (`datasets.derive`)
into a private datasets root beside the runs (`.verifily-attribution/datasets/`), trained from the run's recorded
config through `verifily train` (so it has its own run key, is cached, and verifies like any run), and evaluated on
exactly the run's eval set and slicing. Retrains run as parallel processes (`jobs`), each with its share of the
cores, or its own GPU when several are visible.

* loo: a segment's value on a slice is the run's score minus the score without the segment, with `compare`'s
  paired interval and its false-discovery-controlled q-value; `hurt` when removing it helps significantly.
* segment-shapley: the Shapley value of each segment of one tag key for the primary per-example score (accuracy;
  token F1 for generation), exact over every subset of at most MAX_EXACT segments, beyond that a Monte Carlo estimate
  over seeded random orderings, as many as the budget's retrains hold (the empty coalition scores 0, so the values
  sum to the run's score), with percentile intervals from bootstrap resamples of the eval rows (and seeds; not of
  the orderings drawn).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VerifilyError
from ..tags import tag_value
from . import defaults

MAX_EXACT = 4
MAX_ORDERINGS = 200  # Monte Carlo segment Shapley: orderings sampled at most (those sharing retrains cost none)
DEFAULT_BUDGET = defaults.BUDGET
PRIVATE_ROOT = ".verifily-attribution"


def plan(method: str, values: Sequence[str]) -> list[frozenset[str]]:
    """The segment sets to drop, one retrain each: loo one segment at a time; segment-shapley (up to MAX_EXACT
    segments) every coalition of kept segments except all (the run itself) and none (scores 0)."""
    if method == "loo":
        return [frozenset([v]) for v in values]
    if len(values) > MAX_EXACT:
        raise VerifilyError(f"exact segment Shapley goes up to {MAX_EXACT} segments", hint="use monte_carlo_plan")
    full = frozenset(values)
    return [full - frozenset(kept) for r in range(1, len(values)) for kept in itertools.combinations(values, r)]


def monte_carlo_plan(values: Sequence[str], coalitions: int, seed: int) -> tuple[list[frozenset[str]], list[tuple]]:
    """Segment Shapley beyond MAX_EXACT segments: seeded random orderings of the segments, as many as fit in
    `coalitions` distinct retrains (each ordering's prefixes are coalitions; prefixes shared by orderings are trained
    once). Returns (the segment sets to drop, the orderings); at least 2 orderings, else a VerifilyError."""
    rng = np.random.default_rng(seed)
    full = frozenset(values)
    kept: set[frozenset[str]] = set()
    orders: list[tuple] = []
    for _ in range(MAX_ORDERINGS):
        order = tuple(rng.permutation(list(values)))
        new = {frozenset(order[:i]) for i in range(1, len(order))} - kept
        if len(kept) + len(new) > coalitions:
            break
        kept |= new
        orders.append(order)
    if len(orders) < 2:
        need = 2 * (len(values) - 1)
        raise VerifilyError(
            f"segment Shapley over {len(values)} segments samples orderings of them; two orderings need up to "
            f"{need} retrains and the budget leaves {coalitions}",
            hint=f"raise --budget (e.g. {need * 10} for about ten orderings), or use --method loo",
        )
    return sorted((full - k for k in kept), key=lambda d: (len(d), sorted(d))), orders


def sampled_shapley(utilities: dict[frozenset[str], np.ndarray], orders: list[tuple]) -> dict[str, np.ndarray]:
    """The Monte Carlo Shapley estimate: each segment's marginal gain averaged over the sampled orderings (the empty
    coalition scores 0); as the exact values, the estimates add up to the full coalition's utility."""
    out: dict[str, np.ndarray] = {}
    for order in orders:
        for i, v in enumerate(order):
            before = frozenset(order[:i])
            gain = utilities[before | {v}] - utilities.get(before, np.zeros(()))
            out[v] = out.get(v, np.zeros(())) + gain / len(orders)
    return out


def ordering_variance(utilities: dict[frozenset[str], np.ndarray], orders: list[tuple]) -> dict[str, float]:
    """The Monte Carlo estimate's own sampling variance: the variance of each segment's marginal gain over the
    sampled orderings, over their number (utilities: scalars)."""
    gains: dict[str, list[float]] = {}
    for order in orders:
        for i, v in enumerate(order):
            before = frozenset(order[:i])
            gains.setdefault(v, []).append(float(utilities[before | {v}] - utilities.get(before, np.zeros(()))))
    return {v: float(np.var(g, ddof=1)) / len(g) if len(g) > 1 else 0.0 for v, g in gains.items()}


def _version_for(parent_version: str, key: str, dropped: frozenset[str]) -> str:
    digest = hashlib.sha256(json.dumps([key, sorted(dropped)]).encode()).hexdigest()[:10]
    return f"{parent_version}-without-{digest}"


def derived_versions(
    manifest: Any, split: str, key: str, subsets: list[frozenset[str]], root: Path
) -> dict[frozenset[str], str]:
    """name@version of the dataset without each subset's segments, derived into `root` (reused when there)."""
    from ..datasets.derive import Drop, derive
    from ..datasets.loading import load_split

    rows = load_split(manifest, split)
    values = [tag_value(t, key) for t in rows["tags"]]
    ids = [str(i) for i in rows["id"]]
    out = {}
    for dropped in subsets:
        version = _version_for(manifest.version, key, dropped)
        if not (root / manifest.name / version).is_dir():
            drop_ids = {i for i, v in zip(ids, values, strict=True) if v in dropped}
            rule = f"tag segment(s) {', '.join(f'{key}={v}' for v in sorted(dropped))} left out (verifily attribute)"
            derive(manifest, version, Drop(split, drop_ids, rule), root=root)
        out[dropped] = f"{manifest.name}@{version}"
    return out


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _gpus() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # no torch build with CUDA: CPU retrains
        return 0


Job = tuple[frozenset, int]  # (the segments left out, the training seed)


def retrain_all(
    run: Any,
    jobs_list: list[tuple[frozenset[str], int, str, Path]],
    eval_spec: dict[str, Any],
    jobs: int,
    echo: Callable[[str], None],
) -> dict[Job, Path]:
    """Train and evaluate one run per (segments left out, seed, dataset ref, datasets root) — cached runs are
    reused — and return their folders by (segments left out, seed)."""
    import yaml

    from ..yamlsource import load_yaml

    cfg = load_yaml(run.dir / "config.yaml", "run config")
    cfg["run_name"] = None
    cfg["output_dir"] = str(run.dir.resolve().parent)
    gpus = _gpus()
    with tempfile.TemporaryDirectory(prefix="verifily-attribute-") as tmp:
        configs: dict[int, Path] = {}
        for _, seed, _, _ in jobs_list:
            if seed not in configs:
                cfg["training"]["seed"] = seed
                configs[seed] = Path(tmp) / f"config-{seed}.yaml"
                configs[seed].write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

        def one(i: int, dropped: frozenset[str], seed: int, ref: str, root: Path) -> tuple[Job, Path]:
            env = dict(os.environ, OMP_NUM_THREADS=str(_threads(jobs)), MKL_NUM_THREADS=str(_threads(jobs)))
            if gpus > 1:
                env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            what = f"without {', '.join(sorted(dropped))}" if dropped else "on all rows"
            cli = [sys.executable, "-m", "verifily_action.cli"]
            train = [*cli, "train", "--config", str(configs[seed]), "--dataset", ref, "--datasets-root", str(root)]
            done = subprocess.run([*train, "--json"], capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise VerifilyError(
                    f"the retrain {what} (seed {seed}) failed (exit {done.returncode})",
                    hint=(done.stdout + done.stderr).strip()[-600:],
                )
            folder = Path(json.loads(done.stdout)["run_dir"])
            ev = [*cli, "eval", "--run", str(folder), "--dataset", eval_spec["ref"], "--split", eval_spec["split"]]
            ev += ["--datasets-root", eval_spec["root"]] if eval_spec.get("root") else []
            ev += [a for key in eval_spec["slice_by"] for a in ("--slice-by", key)]
            done = subprocess.run(ev, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise VerifilyError(
                    f"evaluating the retrain {folder} failed (exit {done.returncode})",
                    hint=(done.stdout + done.stderr).strip()[-600:],
                )
            echo(f"retrain {i + 1}/{len(jobs_list)} done: {what}, seed {seed} -> {folder.name}")
            return (dropped, seed), folder

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(one, i, *job) for i, job in enumerate(jobs_list)]
            return dict(f.result() for f in futures)


def seeded_values(
    scores: dict[frozenset[str], np.ndarray],
    value_of: Callable[[dict[frozenset[str], np.ndarray]], dict[str, np.ndarray]],
    idx: np.ndarray,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
    extra_variance: Callable[[dict[frozenset[str], np.ndarray]], dict[str, float]] | None = None,
) -> dict[str, tuple[float, float, float]]:
    """{segment: (value, low, high)} from each coalition's scores (seeds x eval rows) on the eval rows `idx`: the
    value of the utilities (mean over seeds and rows). One seed: the interval is the bootstrap percentile one over
    the eval rows. Several: the value is also computed per seed (seed i of every coalition; Shapley and
    leave-one-out are linear in the utilities, so their mean is the value), and the interval is value +- t(n-1) x
    sqrt(var_rows + var_seeds / n): var_rows from bootstrap resamples of the eval rows (the same draws for every
    coalition), var_seeds the sample variance of the per-seed values. Student's t with n - 1 degrees of freedom, not
    a bootstrap over seeds: resampling 3 seeds with replacement makes an interval far too narrow (its variance is
    (n - 1) / n of the mean's, from 10 distinct means). `extra_variance` (the Monte Carlo orderings' own,
    `ordering_variance`, of the mean utilities) adds to the sum; with one seed the interval is then
    value +- z x sqrt(var_rows + extra)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    point = value_of({c: np.asarray(a[:, idx].mean()) for c, a in scores.items()})
    rows = rng.integers(0, len(idx), size=(resamples, len(idx)))
    n_seeds = next(iter(scores.values())).shape[0]
    boot = value_of({c: a[:, idx][:, rows].mean(axis=2).mean(axis=0) for c, a in scores.items()})
    alpha = (1 - confidence) / 2
    out = {}
    extra = extra_variance({c: a[:, idx].mean() for c, a in scores.items()}) if extra_variance else {}
    if n_seeds == 1 and extra:
        z = float(norm.ppf(1 - alpha))
        for v, p in point.items():
            half = z * float(np.sqrt(np.var(boot[v], ddof=1) + extra[v]))
            out[v] = (float(p), float(p) - half, float(p) + half)
        return out
    if n_seeds == 1:
        for v, p in point.items():
            lo, hi = np.quantile(boot[v], [alpha, 1 - alpha])
            out[v] = (float(p), float(lo), float(hi))
        return out
    per_seed = value_of({c: a[:, idx].mean(axis=1) for c, a in scores.items()})
    q = float(student_t.ppf(1 - alpha, n_seeds - 1))
    for v, p in point.items():
        var = np.var(boot[v], ddof=1) + np.var(per_seed[v], ddof=1) / n_seeds + extra.get(v, 0.0)
        half = q * float(np.sqrt(var))
        out[v] = (float(p), float(p) - half, float(p) + half)
    return out


def loo_values(
    run_dir: Path, folders: dict[frozenset[str], Path], slice_by: list[str]
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """(metric, {slice label: [one entry per segment]}) from `compare` of the run with each retrain."""
    from ..compare import compare
    from ..tags import slice_label

    metric = ""
    out: dict[str, list[dict[str, Any]]] = {}
    for dropped, folder in folders.items():
        (value,) = dropped
        comparison = compare([run_dir, folder], slice_by=slice_by or None, config_gates=False)
        metric = comparison["metrics"][0]
        for row in comparison["rows"]:
            d = row["deltas"][0]
            if row["metric"] != metric or d.get("status") != "compared":
                continue
            if row["direction"] == "higher":  # value: how much better the run is with the segment
                val, lo, hi = -d["delta"], -d["ci_high"], -d["ci_low"]
            else:
                val, lo, hi = d["delta"], d["ci_low"], d["ci_high"]
            verdict = ("hurt" if val < 0 else "helped") if d["significant"] else "unclear"
            entry = {"value": value, "sum": val, "ci_low": lo, "ci_high": hi, "p_value": d["p_value"],
                     "q_value": d.get("q_value"), "verdict": verdict, "run": folder.name}  # fmt: skip
            out.setdefault(slice_label(row["slice"]), []).append(entry)
    return metric, out


def shapley_values(utilities: dict[frozenset[str], np.ndarray], values: Sequence[str]) -> dict[str, np.ndarray]:
    """Exact Shapley value of each segment; `utilities[kept]` is an array (e.g. one entry per bootstrap resample),
    with the empty coalition 0."""
    n = len(values)
    out: dict[str, np.ndarray] = {}
    for v in values:
        total: np.ndarray = np.zeros(())
        others = [w for w in values if w != v]
        for r in range(n):
            weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for kept in itertools.combinations(others, r):
                with_v, without = frozenset((*kept, v)), frozenset(kept)
                total = total + weight * (utilities[with_v] - utilities.get(without, 0.0))
        out[v] = total
    return out


def score_matrix(run_dirs: list[Path]) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """(eval ids, runs x examples primary scores aligned to the first run's ids, the first run's tags)."""
    from ..compare.loading import load_runs
    from ..evaluate.metrics import PRIMARY_SCORE

    runs = load_runs(run_dirs)
    ids = runs[0].ids
    rows = []
    for r in runs:
        where = {i: k for k, i in enumerate(r.ids)}
        if set(where) != set(ids):
            raise VerifilyError(f"run {r.dir} was evaluated on other examples than {runs[0].dir}")
        scores = r.outcomes().scores[PRIMARY_SCORE[r.task]]
        rows.append(np.asarray(scores, dtype=float)[[where[i] for i in ids]])
    return ids, np.stack(rows), runs[0].tags
