"""The pull-request report: one markdown body for the sticky comment and the job summary — a title, the baseline
line, the stage's report (a comparison or this run alone), links to the workflow run and its artifact, and the run's
root hash (what `reproduce --verify-only` prints and a signature signs: the report names exactly the run it is on)."""

from __future__ import annotations

import re

from .escape import code_span, prose

TITLE = "## Verifily Train"
_ROOT = re.compile(r"[0-9a-f]{64}")


def baseline_line(description: str | None, reason: str, *, found: bool) -> str:
    """`Baseline: run 123 … : <why>.`, `Baseline: the run folder … .` or `No baseline: <why>.` (`reason` is our
    sentence quoting data — a path, a branch, a server's message — with names in `code spans`: `escape.prose`).
    `description` is the found baseline's own (already inert) line."""
    if found and description:
        return f"{description}: {prose(reason)}."
    if found:
        return f"Baseline: {prose(reason)}."
    return f"No baseline: {prose(reason)}."


def compose(
    body: str,
    baseline: str,
    *,
    run_url: str,
    artifact_name: str,
    artifact_id: int | None,
    note: str = "",
    root_hash: str | None = None,
    html: str | None = None,
) -> str:
    """The whole report. `artifact_id` None: the upload failed, so the artifact is named but not linked.
    `root_hash`: the run's root hash when its chain holds (shown only when it is one: 64 hex digits). `html`: the
    dashboard's page in the artifact (`verifily report --html`), named after the link."""
    head = f"{note}\n\n{baseline}" if note else baseline
    artifact = f"artifact `{code_span(artifact_name)}`"
    artifact = f"[{artifact}]({run_url}/artifacts/{artifact_id})" if artifact_id else f"{artifact} (not uploaded)"
    artifact += f" (dashboard: open `{code_span(html)}` from it)" if html and artifact_id else ""
    root = f" · root hash `{root_hash}`" if root_hash and _ROOT.fullmatch(root_hash) else ""
    return f"{TITLE}\n\n{head}\n\n{body.strip()}\n\n---\n[Workflow run]({run_url}) · {artifact}{root}\n"
