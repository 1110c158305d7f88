"""The sticky pull-request comment: one per workflow + config, updated in place on every run.

The comment is found by a hidden HTML marker among *all* of the pull request's comments (a busy PR has more
than one page of them), and only among comments written by the token's own user — anyone can paste the marker into
their own comment, and we must never try to edit theirs. A minimized (hidden) comment is never reused, and an
unchanged body is not sent again. The body is cut to GitHub's 65,536-character limit with a visible note. Text
from data in the body was made inert by `report.escape` (no pings, no HTML) before it got here.

Who "our" comments are by, for every token kind (GitHub's docs; marocchino/sticky-pull-request-comment
`src/comment.ts` does the same): one GraphQL query asks `viewer { login }` and lists the pull request's comments
with `author`, `isMinimized` and `fullDatabaseId` (REST comments carry no minimized state; `databaseId` is a 32-bit
Int that newer comment ids overflow). The viewer of a GitHub App's installation token is `<app-slug>[bot]`
(GITHUB_TOKEN: `github-actions[bot]`), while GraphQL names a bot *author* by its slug alone (`__typename: Bot`)
and REST by `<slug>[bot]`: logins are compared as (bot or not, name). When GraphQL fails, the REST listing is
searched for the `comment-author` input's comments, else `GET /user`'s login (a personal token), else
`github-actions[bot]` — the only guess left, since `GET /user` answers 403 to installation tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import workflow as wf
from .client import GitHubClient, GitHubError
from .graphql import graphql

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
    created: bool  # False when an existing comment was updated (or already said this)
    changed: bool = True  # False when our comment already had this body: nothing was sent

    @property
    def status(self) -> str:
        return "created" if self.created else "updated" if self.changed else "unchanged"


@dataclass
class Comment:
    """A comment as both APIs describe it: the REST id (for PATCH), its page URL and its body."""

    id: int
    url: str
    body: str


@dataclass
class Found:
    """The search's answer: our marked comment (None: there is none) and whose comments were searched."""

    comment: Comment | None
    author: str


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


COMMENTS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  viewer { login }
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      comments(first: 100, after: $after) {
        nodes { fullDatabaseId url body isMinimized author { __typename login } }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
MAX_PAGES = 100  # 10,000 comments: far beyond any real pull request; a broken cursor must not loop forever


def identity(login: str, kind: str | None = None) -> tuple[bool, str]:
    """(is a bot, lower-cased name) for a login as any API spells it: `x[bot]` (a viewer, REST, the
    `comment-author` input) or `x` with GraphQL's `__typename` / REST's `type` `Bot`."""
    name = login.strip().lower()
    if name.endswith("[bot]"):
        return True, name[: -len("[bot]")]
    return kind == "Bot", name


def current_login(client: GitHubClient) -> str:
    """`GET /user`'s login (a personal token); `github-actions[bot]` when GitHub will not say (403 to every
    installation token: the workflow's GITHUB_TOKEN and GitHub Apps')."""
    try:
        return str(client.get_json("user")["login"])
    except GitHubError as e:
        if e.status in (401, 403, 404):
            return ACTIONS_BOT
        raise


def _graphql_comments(client: GitHubClient, repo: str, number: int) -> tuple[str, Iterator[dict[str, Any]]]:
    """The viewer's login and the pull request's comment nodes, page by page (the first page is fetched here, so a
    failing GraphQL API fails before any comment is looked at)."""
    owner, _, name = repo.partition("/")

    def page(after: str | None) -> tuple[list[dict[str, Any]], str | None, str]:
        data = graphql(client, COMMENTS_QUERY, {"owner": owner, "name": name, "number": number, "after": after})
        pull = (data.get("repository") or {}).get("pullRequest")
        if pull is None:
            raise GitHubError(f"GitHub's GraphQL API knows no pull request #{number} in {repo}")
        comments = pull["comments"]
        info = comments.get("pageInfo") or {}
        nxt = info.get("endCursor") if info.get("hasNextPage") else None
        return [n for n in comments.get("nodes") or [] if n], nxt, str(data["viewer"]["login"])

    try:
        nodes, nxt, viewer = page(None)
    except (KeyError, TypeError, AttributeError):
        raise GitHubError("GitHub's GraphQL API answered the comment query in an unexpected shape") from None

    def every() -> Iterator[dict[str, Any]]:
        nonlocal nodes, nxt
        for _ in range(MAX_PAGES):
            yield from nodes
            if not nxt:
                return
            nodes, nxt, _viewer = page(nxt)

    return viewer, every()


def _find_graphql(client: GitHubClient, repo: str, number: int, mark: str) -> Found:
    viewer, nodes = _graphql_comments(client, repo, number)
    me = identity(viewer)
    for n in nodes:
        author = n.get("author") or {}  # null for a deleted account ("ghost")
        if n.get("isMinimized") or mark not in (n.get("body") or ""):
            continue
        if identity(str(author.get("login") or ""), author.get("__typename")) == me and n.get("fullDatabaseId"):
            return Found(Comment(int(n["fullDatabaseId"]), str(n.get("url") or ""), str(n["body"])), viewer)
    return Found(None, viewer)


def _find_rest(client: GitHubClient, repo: str, number: int, mark: str, author: str) -> Found:
    """The REST listing: every page, `author`'s marked comments (minimized ones cannot be told apart here)."""
    me = identity(author)
    for c in client.paginate(f"repos/{repo}/issues/{number}/comments"):
        user = c.get("user") or {}
        if mark in (c.get("body") or "") and identity(str(user.get("login") or ""), user.get("type")) == me:
            return Found(Comment(int(c["id"]), str(c.get("html_url") or ""), str(c["body"])), author)
    return Found(None, author)


def find_sticky(client: GitHubClient, repo: str, number: int, mark: str, fallback_author: str | None = None) -> Found:
    """The first comment of the token's user that holds `mark` and is not minimized (see the module docstring for
    how the user is found, and the fallbacks when GraphQL fails)."""
    try:
        return _find_graphql(client, repo, number, mark)
    except GitHubError as e:
        if e.rate_limited:
            raise
        why = client.redact(e.message)
    if fallback_author:
        print(f"GraphQL failed ({why}): looking for the comment of `{fallback_author}` (the comment-author input)")
        return _find_rest(client, repo, number, mark, fallback_author)
    author = current_login(client)
    if author == ACTIONS_BOT:
        wf.warning(
            f"GitHub's GraphQL API could not say who this token is ({why}): assuming `{ACTIONS_BOT}` writes the "
            "comment; with a GitHub App's token set the comment-author input to `<app-slug>[bot]`, or each run "
            "posts a new comment"
        )
    return _find_rest(client, repo, number, mark, author)


def _same_text(a: str, b: str) -> bool:
    return a.replace("\r\n", "\n") == b.replace("\r\n", "\n")


def upsert_sticky(
    client: GitHubClient, repo: str, number: int, body: str, mark: str, fallback_author: str | None = None
) -> CommentResult:
    """Update our marked comment if there is one (nothing is sent when it already says this), else create it. The
    marker is prepended to the body. `fallback_author`: the `comment-author` input, used only when GraphQL fails."""
    full = truncate_body(f"{mark}\n{body}")
    existing = find_sticky(client, repo, number, mark, fallback_author).comment
    if existing is not None and _same_text(existing.body, full):
        return CommentResult(id=existing.id, url=existing.url, created=False, changed=False)
    for attempt in range(2):
        try:
            if existing:
                r = client.request("PATCH", f"repos/{repo}/issues/comments/{existing.id}", json={"body": full})
            else:
                r = client.request("POST", f"repos/{repo}/issues/{number}/comments", json={"body": full})
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
