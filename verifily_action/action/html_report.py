"""The dashboard's page for the artifact: `verifily report --html` of this run with the comparison the Action made
(the comment's own), written beside the run folder as REPORT_FILE; the comment names it. Never fails the job: a
report that cannot be made is a warning (the comment and the artifact do not depend on it)."""

from __future__ import annotations

from pathlib import Path

from ..errors import VerifilyError
from ..github import workflow as wf
from ..github.baseline import BaselineResult

REPORT_FILE = "verifily-report.html"  # in the artifact, beside the run's files (outside its hash chain)


def build(run_dir: Path, base: BaselineResult, comparison_json: Path | None) -> bytes | None:
    from ..dashboard.static_report import report_html
    from ..runs.files import read_json

    try:
        comparison = read_json(comparison_json) if comparison_json is not None and comparison_json.is_file() else None
        baseline = base.baseline.dir if base.baseline is not None and comparison is not None else None
        return report_html(run_dir, baseline, comparison=comparison).encode("utf-8")
    except (VerifilyError, OSError, ValueError) as e:
        wf.warning(f"the HTML report was not made: {e}; the comment and the artifact are complete without it")
        return None


def in_artifact(run_dir: Path) -> str | None:
    """REPORT_FILE when the downloaded artifact holds it (comment mode), else None."""
    return REPORT_FILE if (run_dir / REPORT_FILE).is_file() else None
