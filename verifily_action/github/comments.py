"""The sticky pull-request comment: one per workflow + config, updated in place on every run.

The comment is found by a hidden HTML marker among *all* of the pull request's comments (a busy PR has more
than one page of them), and only among comments written by the same user — anyone can paste the marker into their
own comment, and we must never try to edit theirs. The body is cut to GitHub's 65,536-character limit with a
visible note. Text from data in the body was made inert by `report.escape` (no pings, no HTML) before it got here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .client import GitHubClient, GitHubError

MAX_BODY = 65536
ACTIONS_BOT = "github-actions[bot]"
TRUNCATION_NOTE = (
    "\n\n> **Note:** this report was cut to fit GitHub's comment size limit; "
    "the full report is in the job summary and the run artifact.\n"
)


@dataclass
class CommentResult:
    id: int
    url: str
    created: bool  # False when an existing comment was updated


def marker(workflow: str, config: str) -> str:
    """The hidden marker for a workflow + config pair. Hashing keeps user-chosen names (which could hold `-->`)
    out of the HTML comment and makes the marker a fixed size."""
    key = hashlib.sha256(f"{workflow}\0{config}".encode()).hexdigest()[:16]
    return f"<!-- verifily-action:sticky:{key} -->"


def truncate_body(body: str, limit: int = MAX_BODY) -> str:
    """Cut `body` to at most `limit` characters (counting as GitHub does, in UTF-16 code units, so emoji count
    twice), at a line break when one is near, with the note appended."""
    if _utf16_len(body) <= limit:
        return body
    room = limit - _utf16_len(TRUNCATION_NOTE)
    cut = body[:room]
    while _utf16_len(cut) > room:
        cut = cut[: len(cut) - max(1, (_utf16_len(cut) - room) // 2)]
    nl = cut.rfind("\n")
    if nl > room * 0.8:
        cut = cut[:nl]
    # an unclosed code fence would swallow the note
    if cut.count("```") % 2:
        cut += "\n```"
    return cut + TRUNCATION_NOTE


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def current_login(client: GitHubClient) -> str:
    """Who our comments are written by. A personal token can ask /user; the workflow's GITHUB_TOKEN cannot
    (403: it is an app installation token) and always writes as github-actions[bot]."""
    try:
        return str(client.get_json("user")["login"])
    except GitHubError as e:
        if e.status in (401, 403, 404):
            return ACTIONS_BOT
        raise


def find_sticky(client: GitHubClient, repo: str, issue_number: int, mark: str, author: str) -> dict[str, Any] | None:
    """The first comment by `author` that contains `mark`, across every page of comments."""
    for c in client.paginate(f"repos/{repo}/issues/{issue_number}/comments"):
        if mark in (c.get("body") or "") and ((c.get("user") or {}).get("login") or "").lower() == author.lower():
            return c
    return None


def upsert_sticky(
    client: GitHubClient, repo: str, issue_number: int, body: str, mark: str, author: str | None = None
) -> CommentResult:
    """Update our marked comment if there is one, else create it. The marker is prepended to the body."""
    author = author or current_login(client)
    full = truncate_body(f"{mark}\n{body}")
    existing = find_sticky(client, repo, issue_number, mark, author)
    for attempt in range(2):
        try:
            if existing:
                r = client.request("PATCH", f"repos/{repo}/issues/comments/{existing['id']}", json={"body": full})
            else:
                r = client.request("POST", f"repos/{repo}/issues/{issue_number}/comments", json={"body": full})
            break
        except GitHubError as e:
            # GitHub's counting differs from ours in rare cases (it measures after its own normalisation): when it
            # still says "too long", cut to half and try once more rather than lose the comment
            if e.status == 422 and "too long" in e.message.lower() and attempt == 0:
                full = truncate_body(full, MAX_BODY // 2)
                continue
            raise
    data = r.json()
    return CommentResult(id=int(data["id"]), url=data.get("html_url") or "", created=existing is None)
