"""`verifily report --html`: a run's page (and, with a baseline, the comparison page of `compare`) as one
self-contained HTML file — the dashboard's templates with the CSS and chart script inlined — written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..runs.files import write_text_atomic
from .compareview import compare_runs, compare_view
from .render import standalone
from .runview import run_view


def report_html(
    run: str | Path,
    baseline: str | Path | None = None,
    datasets_root: str | Path | None = None,
    comparison: Mapping[str, Any] | None = None,
) -> str:
    """The page; `comparison`: one `compare` already made for these runs (the Action's), else it is computed."""
    runs = [run_view(baseline), run_view(run)] if baseline else [run_view(run)]
    cmp: dict[str, Any] | None = None
    if baseline:
        cmp = compare_view(comparison or compare_runs([baseline, run], datasets_root))
    title = f"Run {runs[-1]['name']}" + (f" against {runs[0]['name']}" if baseline else "")
    # the candidate first: the page is about it; the baseline's own page follows for reference
    return standalone("report.html", title=title, cmp=cmp, runs=list(reversed(runs)))


def write_report(
    run: str | Path, out: str | Path, baseline: str | Path | None = None, datasets_root: str | Path | None = None
) -> Path:
    text = report_html(run, baseline, datasets_root)
    target = Path(out)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, text)
    except OSError as e:
        raise VerifilyError(f"cannot write {target}: {e.strerror or e}", hint="choose a writable --html path") from e
    return target
