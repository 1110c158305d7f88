"""Read the event that started the workflow (GITHUB_EVENT_PATH) into the few facts the Action needs.

Handled: `pull_request` (and `pull_request_target`), `push`, `workflow_run`; anything else (workflow_dispatch,
schedule) becomes a plain event with the commit from GITHUB_SHA. A pull request is a fork's when its head
repository differs from its base repository (or is gone: a deleted fork) — such runs get a read-only token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VerifilyError

PR_EVENTS = ("pull_request", "pull_request_target")


@dataclass
class PullRequest:
    number: int
    base_ref: str
    base_sha: str
    head_ref: str
    head_sha: str
    base_repo: str
    head_repo: str | None  # None when the fork was deleted

    @property
    def is_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


@dataclass
class WorkflowRunInfo:
    """The run that triggered a `workflow_run` event (the fork-safe comment job reads its artifact)."""

    id: int
    name: str
    path: str | None
    event: str
    conclusion: str | None
    head_sha: str
    head_branch: str | None
    head_repo: str | None
    repository: str
    html_url: str
    pull_numbers: list[int] = field(default_factory=list)  # empty for fork PRs: GitHub leaves the list out

    @property
    def from_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.repository.lower()


@dataclass
class Event:
    name: str
    repository: str  # owner/name the workflow runs in
    sha: str
    ref: str | None
    default_branch: str | None
    pull_request: PullRequest | None = None
    workflow_run: WorkflowRunInfo | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_fork_pr(self) -> bool:
        return self.pull_request is not None and self.pull_request.is_fork

    @property
    def branch(self) -> str | None:
        if self.ref and self.ref.startswith("refs/heads/"):
            return self.ref[len("refs/heads/") :]
        return None


def _repo_name(repo: Mapping[str, Any] | None) -> str | None:
    return repo.get("full_name") if repo else None


def parse_event(name: str, payload: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Event:
    """Build an `Event` from an event name and payload; env supplies GITHUB_REPOSITORY/SHA/REF fallbacks, and
    GITHUB_BASE_REF (set by the runner on pull request events) for a payload without `pull_request.base.ref`."""
    env = os.environ if env is None else env
    repo_obj = payload.get("repository") or {}
    repository = _repo_name(repo_obj) or env.get("GITHUB_REPOSITORY", "")
    ev = Event(
        name=name,
        repository=repository,
        sha=env.get("GITHUB_SHA", ""),
        ref=env.get("GITHUB_REF"),
        default_branch=repo_obj.get("default_branch"),
        payload=dict(payload),
    )
    try:
        if name in PR_EVENTS:
            pr = payload["pull_request"]
            base_ref = pr["base"].get("ref") or env.get("GITHUB_BASE_REF")
            if not base_ref:
                raise KeyError("pull_request.base.ref")
            ev.pull_request = PullRequest(
                number=int(payload.get("number") or pr["number"]),
                base_ref=base_ref,
                base_sha=pr["base"]["sha"],
                head_ref=pr["head"]["ref"],
                head_sha=pr["head"]["sha"],
                base_repo=_repo_name(pr["base"].get("repo")) or repository,
                head_repo=_repo_name(pr["head"].get("repo")),
            )
        elif name == "push":
            ev.sha = payload.get("after") or ev.sha
            ev.ref = payload.get("ref") or ev.ref
        elif name == "workflow_run":
            wr = payload["workflow_run"]
            ev.workflow_run = WorkflowRunInfo(
                id=int(wr["id"]),
                name=wr.get("name") or "",
                path=wr.get("path"),
                event=wr.get("event") or "",
                conclusion=wr.get("conclusion"),
                head_sha=wr["head_sha"],
                head_branch=wr.get("head_branch"),
                head_repo=_repo_name(wr.get("head_repository")),
                repository=_repo_name(wr.get("repository")) or repository,
                html_url=wr.get("html_url") or "",
                pull_numbers=[int(p["number"]) for p in wr.get("pull_requests") or []],
            )
    except (KeyError, TypeError, ValueError) as e:
        raise VerifilyError(
            f"the {name} event payload is missing {e}",
            hint="is GITHUB_EVENT_PATH the file the runner wrote for this workflow?",
        ) from None
    return ev


def load_event(env: Mapping[str, str] | None = None) -> Event:
    """Read GITHUB_EVENT_NAME and the JSON at GITHUB_EVENT_PATH."""
    env = os.environ if env is None else env
    name = env.get("GITHUB_EVENT_NAME", "")
    path = env.get("GITHUB_EVENT_PATH")
    payload: dict[str, Any] = {}
    if path:
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise VerifilyError(f"cannot read the event payload {path}: {e}") from None
    if not name:
        raise VerifilyError("GITHUB_EVENT_NAME is not set", hint="the Action runs inside a GitHub Actions workflow")
    return parse_event(name, payload, env)
