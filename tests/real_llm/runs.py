"""What every test module of the llm tier does: set up, in a module fixture, the isolation that tests/conftest.py
gives each test (a module fixture runs before it), then train runs of SmolLM2 through the CLI and evaluate them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.builders import write_config
from tests.cli_runner import run_cli


@contextlib.contextmanager
def isolated(tmp_path_factory: Any, model_cache: Path) -> Iterator[None]:
    """Offline, with caches of its own and the session's converted model (conftest.py: VERIFILY_MODEL_CACHE)."""
    cache = tmp_path_factory.mktemp("llm-caches")
    with pytest.MonkeyPatch.context() as mp:
        for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            mp.setenv(flag, "1")
        mp.setenv("HF_HOME", str(cache / "hf"))
        mp.setenv("HF_DATASETS_CACHE", str(cache / "hf" / "datasets"))
        mp.setenv("VERIFILY_CACHE", str(cache / "verifily"))
        mp.setenv("VERIFILY_MODEL_CACHE", str(model_cache))
        yield


def train_and_eval(root: Path, name: str, *, model: Path, dataset: str, **config: Any) -> Path:
    """`verifily train` then `verifily eval` of `<root>/runs/<name>` (datasets under `<root>/datasets`)."""
    cfg = write_config(
        root / f"{name}.yaml", model=str(model), dataset=dataset, datasets_root=str(root / "datasets"),
        output_dir=str(root / "runs"), run_name=name, **config,
    )  # fmt: skip
    out = run_cli("train", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    run = root / "runs" / name
    out = run_cli("eval", "--run", str(run))
    assert out.returncode == 0, out.stderr
    return run


def overall_deltas(compare_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metric -> the first delta of `compare -f json`'s unsliced row."""
    return {r["metric"]: r["deltas"][0] for r in compare_json["rows"] if not r["slice"]}


def slice_deltas(compare_json: dict[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    """slice ("key=value", joined by "," when crossed) -> the first delta of `metric` for every slice row."""
    rows = [r for r in compare_json["rows"] if r["slice"] and r["metric"] == metric]
    return {",".join(f"{k}={v}" for k, v in sorted(r["slice"].items())): r["deltas"][0] for r in rows}


def print_table(compare_json: dict[str, Any], metric: str) -> None:
    """The numbers the README quotes (`pytest tests/real_llm -s`): per slice, n, baseline -> run and the delta with
    its interval."""
    print(f"\n{metric}: slice (n) baseline -> run, delta [interval]")
    for r in compare_json["rows"]:
        if r["metric"] != metric:
            continue
        (a, b), d = r["values"][:2], r["deltas"][0]
        where = ",".join(f"{k}={v}" for k, v in sorted(r["slice"].items())) or "overall"
        print(f"  {where} ({a['n']}) {a['value']:.3f} -> {b['value']:.3f}, {d['delta']:+.3f} "
              f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]{' significant' if d['significant'] else ''}")  # fmt: skip


ALPACA_LICENSE = "Apache-2.0 (AlpacaEval, tatsu-lab/alpaca_eval)"


def write_splits(root: Path, name: str, rows: list[dict], n_train: int, n_eval: int, task: str, **about: Any) -> None:
    """ds `<name>@v1` under `<root>/datasets`: `rows` shuffled with a fixed seed, the first n_train to train, the next
    n_eval to eval; tagged by `dataset` (AlpacaEval's source set) unless `tag_keys` says otherwise."""
    import random

    from tests.builders import write_dataset

    rows = list(rows)
    random.Random(0).shuffle(rows)
    splits = {"train": rows[:n_train], "eval": rows[n_train : n_train + n_eval]}
    about = {"tag_keys": ("dataset",), "license": ALPACA_LICENSE, **about}
    write_dataset(root / "datasets", name, "v1", splits, task=task, fields=None, **about)


def baseline_and_trained(root: Path, *, training: dict[str, Any], **config: Any) -> tuple[Path, Path]:
    """(base, trained): the model as it is (`max_steps: 0`) and trained with `training`, evaluated alike."""
    base = train_and_eval(root, "base", training={**training, "max_steps": 0}, **config)
    return base, train_and_eval(root, "trained", training=training, **config)


def compared(baseline: Path, run: Path) -> dict[str, Any]:
    """`verifily compare --runs BASELINE,RUN -f json` (exit 1 is a failed gate, not an error)."""
    import json

    out = run_cli("compare", "--runs", f"{baseline},{run}", "-f", "json")
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)
