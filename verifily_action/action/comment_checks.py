"""What the comment job (`mode: comment`) decides about the run it reports: whether the pull request the artifact
names still has the run's head commit, and which gates and slices the comparison uses.

The pull request. The artifact is a fork's data; only the API is believed. A pull request whose head is still the
run's commit gets the comment. One whose head moved on since the run, from the same place (head repository and
branch, what names a fork's pull request: GitHub leaves `workflow_run.pull_requests` empty for forks), was pushed to
again: a notice, nothing to comment, the newer commit's run comments. Anything else is a refusal.

The gates. Fork and same-repository pull requests show the same gate results: the comparison uses the `fail-on`
and `slice-by` the pull request's own job ran with, recorded in `verifily-pr.json` (action/artifact.py checks them:
rules and slice expressions of the grammar, bounded in number and length, so they can only choose among gates and
slices). A fork must not weaken the base repository's gates: its job runs the fork's copy of the workflow and the
config, so its `fail-on` and its run's config `gates:` can only add rules. The comment job's own `fail-on` input and
the `gates:` of the base branch's config (the comment job's `config` input, in its checkout of the base branch) are
always checked on top. The comment job never fails on a gate: it shows them; the pull request's own job decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..github import workflow as wf
from ..github.events import WorkflowRunInfo
from .inputs import Inputs, fail_on_rules

DEPENDABOT = "dependabot[bot]"  # GITHUB_ACTOR of Dependabot's pull requests, whose jobs get a read-only token


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower() == str(b).lower()


def confirmed_pull_request(client: Any, repo: str, number: int, wr: WorkflowRunInfo) -> dict[str, Any] | None:
    """Pull request `number` from the API when it is the run's (see the module docstring); None, after a notice,
    when its head moved on since the run. Raises VerifilyError (a refusal) otherwise."""
    refuse = f"run {wr.id} says it is pull request #{number}"
    if wr.pull_numbers and number not in wr.pull_numbers:
        raise VerifilyError(f"{refuse}, but GitHub links the run to {wr.pull_numbers}; refusing to comment")
    pr = client.get_json(f"repos/{repo}/pulls/{number}")
    if not _same((pr["base"].get("repo") or {}).get("full_name"), repo):
        raise VerifilyError(f"pull request #{number} does not target {repo}; refusing to comment")
    head = pr["head"]
    if head["sha"] == wr.head_sha:
        return dict(pr)
    if _same((head.get("repo") or {}).get("full_name"), wr.head_repo) and _same(head.get("ref"), wr.head_branch):
        wf.notice(
            f"pull request #{number} moved on since run {wr.id}: its head is {head['sha'][:12]} now, the run "
            f"measured {wr.head_sha[:12]} (the contributor pushed again); nothing to comment, the newer commit's "
            "run comments"
        )
        return None
    raise VerifilyError(f"{refuse}, but that pull request's head is not {wr.head_sha[:12]}; refusing to comment")


def comment_inputs(inputs: Inputs, info: Mapping[str, Any], run_dir: Path) -> Inputs:
    """The comment job's inputs for the comparison (see the module docstring): the pull request job's recorded
    `slice-by` (else the comment job's own) and, as `fail-on`, the comment job's own rules, the pull request job's
    recorded rules and the base branch config's gates that the run's own config (applied by compare) lacks."""
    from ..compare.loading import config_gates

    own = config_gates(run_dir)
    base = [g for g in base_gates(Path(inputs.config)) if g not in own]
    rules = dict.fromkeys([*fail_on_rules(inputs.fail_on), *(info.get("fail_on") or []), *base])
    return replace(inputs, fail_on="\n".join(rules) or None, slice_by=list(info.get("slice_by") or inputs.slice_by))


def base_gates(config: Path) -> list[str]:
    """The `gates:` of the base branch's config (the comment job's checkout); none, with a warning, when the
    checkout lacks the config."""
    if not config.is_file():
        wf.warning(
            f"the config {config} is not in this job's checkout, so the base branch's gates are not checked in the "
            "comment (check out the base branch before this step)"
        )
        return []
    from ..config import load_config

    return list(load_config(config).gates)
