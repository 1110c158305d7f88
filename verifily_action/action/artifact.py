"""The comment job's input: the triggering run's artifact, read as untrusted data (a fork's pull request made it,
and a fork controls every byte of it). Each problem is one error that refuses the comment — storage or network
failures, an unsafe or broken archive, an invalid `verifily-pr.json`, a run folder whose files are not what
verifily writes — and names the file inside the artifact, never a temporary path, the token or a signed URL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from .stages import Pipeline

PR_CONTEXT = "verifily-pr.json"  # written at the artifact's root by the train-eval job (schemas/pr_context)


def fetch_run(client: Any, repo: str, run_id: int, artifact_id: int, name: str, dest: Path) -> Path:
    """The run's artifact, downloaded and extracted into `dest`."""
    from ..github.archive import UnsafeArchive
    from ..github.baseline import download_artifact
    from ..github.client import GitHubError

    try:
        return download_artifact(client, repo, artifact_id, dest)
    except (GitHubError, UnsafeArchive) as e:
        raise VerifilyError(
            f"run {run_id}'s artifact `{name}` cannot be read: {client.redact(e.message)}; refusing to comment",
            hint=e.hint or "the pull request's workflow uploaded an archive verifily will not extract (a fork's?)",
        ) from None


def read_pr_context(run_dir: Path, run_id: int) -> dict[str, Any] | None:
    """The artifact's `verifily-pr.json`, checked against its schema; None when there is none (not a pull
    request's run: nothing to comment)."""
    from ..schemas import validator

    try:
        info = json.loads((run_dir / PR_CONTEXT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    errors = [e.message for e in validator("pr_context.schema.json").iter_errors(info)]
    if not errors:  # the pull request job's gates and slices: only rules and expressions of the grammar
        from ..compare.gates import parse_rules
        from ..evaluate.slices import parse_list

        try:
            parse_rules(info.get("fail_on") or [], f"{PR_CONTEXT} fail_on")
            parse_list(info.get("slice_by") or [], f"{PR_CONTEXT} slice_by")
        except VerifilyError as e:
            errors = [e.message]
    if errors:
        raise VerifilyError(
            f"{PR_CONTEXT} in run {run_id}'s artifact is invalid: {'; '.join(errors[:3])}; refusing to comment"
        )
    return dict(info)


def check_run(pipeline: Pipeline, run_dir: Path, run_id: int, name: str) -> None:
    """The run read as the comparison will read it (`Pipeline.check`), before anything is compared or posted."""
    try:
        pipeline.check(run_dir)
    except VerifilyError as e:
        where = e.message.replace(f"{run_dir.parent}{os.sep}", "")
        raise VerifilyError(
            f"run {run_id}'s artifact `{name}` is not a usable run: {where}; refusing to comment",
            hint="the pull request's workflow must upload the run folder this verifily version's train and eval "
            "wrote, unchanged",
        ) from None
