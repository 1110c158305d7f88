"""GitHub's GraphQL API through the REST client: the same session, token, retries and rate-limit handling.

How GitHub behaves (GitHub's docs, "Forming calls with GraphQL" and "Rate limits and query limits for the GraphQL
API"; the runner's GITHUB_GRAPHQL_URL says the same):
- the endpoint sits beside the REST root: `https://api.github.com` -> `https://api.github.com/graphql`, and GitHub
  Enterprise Server's `https://HOST/api/v3` -> `https://HOST/api/graphql`;
- a query GitHub cannot run (a pull request that does not exist, a field the server lacks, a token without access)
  is answered 200 with an `errors` list, sometimes next to partial `data`: that is a failure here too, one
  GitHubError naming GitHub's messages; an `errors` entry of type `RATE_LIMITED` is a rate limit;
- `viewer { login }` answers for every token kind: a person's login for a personal token, `<app-slug>[bot]` for a
  GitHub App's installation token (the workflow's GITHUB_TOKEN is `github-actions[bot]`), where REST `GET /user`
  answers 403 "Resource not accessible by integration".
"""

from __future__ import annotations

from typing import Any

from .client import RATE_LIMITED_HINT, GitHubClient, GitHubError


def graphql_url(api_url: str) -> str:
    """The GraphQL endpoint for a REST root (see the module docstring)."""
    root = api_url.rstrip("/")
    if root.endswith("/api/v3"):
        return root[: -len("/v3")] + "/graphql"
    return root + "/graphql"


def graphql(client: GitHubClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `query` and return its `data`; GitHubError when GitHub answered with errors or without data."""
    url = graphql_url(client.api_url)
    resp = client.request("POST", url, json={"query": query, "variables": variables or {}})
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise GitHubError(f"GitHub's GraphQL API ({url}) answered {resp.status_code} without a JSON object")
    errors = doc.get("errors")
    if errors:
        items = errors if isinstance(errors, list) else [errors]
        said = "; ".join(str(e.get("message") if isinstance(e, dict) else e) for e in items)[:300]
        limited = any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in items)
        raise GitHubError(
            client.redact(f"{'rate limited: ' if limited else ''}GitHub's GraphQL API refused the query: {said}"),
            status=resp.status_code,
            hint=RATE_LIMITED_HINT if limited else None,
            rate_limited=limited,
        )
    data = doc.get("data")
    if not isinstance(data, dict):
        raise GitHubError("GitHub's GraphQL API answered without data", status=resp.status_code)
    return data
