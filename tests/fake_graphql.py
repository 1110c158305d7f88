"""The fake GitHub's GraphQL endpoint (`POST /graphql`): a small executor for the fields the Action asks for.

GraphQL is not covered by the OpenAPI validation of tests/github_fake.py (the OpenAPI description has no
/graphql). Instead this module parses each query (operation, variables, fields, arguments), checks it against the
part of GitHub's schema written out in FIELDS below — types and argument types copied by hand from
@octokit/graphql-schema 15.26.1 `schema.graphql` (Query.viewer: User!, Query.repository(owner: String!, name:
String!), Repository.pullRequest(number: Int!), PullRequest.comments(first: Int, after: String):
IssueCommentConnection!, IssueComment.fullDatabaseId: BigInt (a string in JSON), Actor.login) — and answers only
the fields asked for, in GitHub's shape: `{"data": …}`, or `{"errors": [{"message", "type"?, "path"?}]}` with
status 200 for a query GitHub cannot run. A field or argument outside FIELDS is an error and a violation, and
tests/test_github_comments.py checks FIELDS against that schema file (tests/npm_fixtures.sh installs it), so a
query the fake answers is one GitHub's schema accepts. What GitHub answers (GitHub's docs and the public
threads cited in verifily_action/github/comments.py): the viewer of an installation token is `<app-slug>[bot]`;
a bot *author* is its slug with `__typename: "Bot"`.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .github_fake import FakeGitHub, Recorded

# type -> field -> (result type or None for a scalar, {argument: GraphQL type})
FIELDS: dict[str, dict[str, tuple[str | None, dict[str, str]]]] = {
    "Query": {
        "viewer": ("User", {}),
        "repository": ("Repository", {"owner": "String!", "name": "String!", "followRenames": "Boolean"}),
    },
    "User": {"login": (None, {}), "__typename": (None, {})},
    "Actor": {"login": (None, {}), "__typename": (None, {})},
    "Repository": {"pullRequest": ("PullRequest", {"number": "Int!"})},
    "PullRequest": {"comments": ("IssueCommentConnection", {"first": "Int", "after": "String"})},
    "IssueCommentConnection": {"nodes": ("IssueComment", {}), "pageInfo": ("PageInfo", {}), "totalCount": (None, {})},
    "PageInfo": {"hasNextPage": (None, {}), "endCursor": (None, {})},
    "IssueComment": {
        "fullDatabaseId": (None, {}),
        "url": (None, {}),
        "body": (None, {}),
        "isMinimized": (None, {}),
        "author": ("Actor", {}),
    },
}
_TOKEN = re.compile(r'\s*(?:(\.\.\.|[{}()\[\]:!$=,@])|("(?:[^"\\]|\\.)*")|(-?\d+)|([_A-Za-z][_0-9A-Za-z]*))')


class QueryError(Exception):
    pass


def _tokens(text: str) -> list[str]:
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise QueryError(f"Parse error near {text[pos : pos + 20]!r}")
        tok = next(g for g in m.groups() if g is not None)
        if tok != ",":  # commas are insignificant in GraphQL
            out.append(tok)
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.t, self.i = _tokens(text), 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise QueryError(f"Parse error: expected {want or 'more'}, got {tok!r}")
        self.i += 1
        return tok

    def document(self) -> tuple[dict[str, str], list[dict[str, Any]]]:
        variables: dict[str, str] = {}
        if self.peek() == "query":
            self.take()
            if self.peek() not in ("(", "{"):
                self.take()  # the operation's name
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    self.take("$")
                    name = self.take()
                    self.take(":")
                    variables[name] = self.type_ref()
                self.take(")")
        sel = self.selection()
        if self.peek() is not None:
            raise QueryError("Parse error: one operation per document")
        return variables, sel

    def type_ref(self) -> str:
        if self.peek() == "[":
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            out = f"[{inner}]"
        else:
            out = self.take()
        if self.peek() == "!":
            self.take()
            out += "!"
        return out

    def selection(self) -> list[dict[str, Any]]:
        self.take("{")
        fields = []
        while self.peek() != "}":
            name = self.take()
            alias = name
            if self.peek() == ":":
                self.take(":")
                name = self.take()
            args: dict[str, tuple[str, str]] = {}
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    arg = self.take()
                    self.take(":")
                    args[arg] = ("var", self.take(None) + self.take()) if self.peek() == "$" else ("lit", self.take())
                self.take(")")
            sub = self.selection() if self.peek() == "{" else None
            fields.append({"alias": alias, "name": name, "args": args, "sel": sub})
        self.take("}")
        return fields


def _check(fields: list[dict[str, Any]], type_name: str, declared: dict[str, str], path: str) -> None:
    """Every field exists on its type, with a selection exactly when it is an object, and each variable passed to
    an argument is declared with the argument's type (a non-null variable may fill a nullable argument)."""
    known = FIELDS[type_name]
    for f in fields:
        if f["name"] not in known:
            raise QueryError(f"Field '{f['name']}' doesn't exist on type '{type_name}'")
        result, args = known[f["name"]]
        if (f["sel"] is None) != (result is None):
            raise QueryError(f"Field '{f['name']}' on {path or 'query'}: selection does not match its type")
        for arg, (kind, value) in f["args"].items():
            if arg not in args:
                raise QueryError(f"Field '{f['name']}' doesn't accept argument '{arg}'")
            if kind == "var":
                have, want = declared.get(value[1:]), args[arg]
                if have is None:
                    raise QueryError(f"Variable ${value[1:]} is used by anonymous query but not declared")
                if have not in (want, want + "!"):  # a non-null variable may fill a nullable argument
                    raise QueryError(f"Type mismatch on variable ${value[1:]} and argument {arg} ({have} / {want})")
        if result is not None:
            _check(f["sel"], result, declared, f"{path}.{f['alias']}")


def _args(f: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, (kind, value) in f["args"].items():
        if kind == "var":
            out[name] = variables.get(value[1:])
        else:
            out[name] = {"true": True, "false": False, "null": None}.get(value, value)
            if value[0] in '"-0123456789':
                out[name] = json.loads(value)
    return out


def _cursor(i: int) -> str:
    return base64.b64encode(f"cursor:v2:{i}".encode()).decode()


class _Resolver:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake

    def resolve(self, fields: list[dict[str, Any]], obj: Any, variables: dict[str, Any]) -> Any:
        if isinstance(obj, list):
            return [self.resolve(fields, o, variables) for o in obj]
        if obj is None:
            return None
        out = {}
        for f in fields:
            value = obj[f["name"]](_args(f, variables)) if callable(obj.get(f["name"])) else obj.get(f["name"])
            out[f["alias"]] = self.resolve(f["sel"], value, variables) if f["sel"] is not None else value
        return out

    def root(self) -> dict[str, Any]:
        return {
            "viewer": lambda a: {"login": self.fake.viewer_login, "__typename": "User"},
            "repository": self.repository,
        }

    def repository(self, a: dict[str, Any]) -> dict[str, Any] | None:
        if f"{a['owner']}/{a['name']}".lower() != self.fake.repo.lower():
            raise QueryError(f"Could not resolve to a Repository with the name '{a['owner']}/{a['name']}'.")
        return {"pullRequest": lambda b: {"comments": lambda c: self.comments(b["number"], c)}}

    def comments(self, number: int, a: dict[str, Any]) -> dict[str, Any]:
        first = a.get("first")
        if first is None or not 1 <= first <= 100:
            raise QueryError("You must provide a `first` value between 1 and 100 to properly paginate `comments`.")
        start = 0
        if a.get("after"):
            start = int(base64.b64decode(a["after"]).decode().rsplit(":", 1)[1]) + 1
        every = self.fake.comments.get(number, [])
        page = every[start : start + first]
        end = start + len(page) - 1
        return {
            "totalCount": len(every),
            "nodes": [self.node(c) for c in page],
            "pageInfo": {"hasNextPage": end + 1 < len(every), "endCursor": _cursor(end) if page else None},
        }

    def node(self, c: dict[str, Any]) -> dict[str, Any]:
        login = c["user"]["login"]
        bot = login.endswith("[bot]")
        return {
            "fullDatabaseId": str(c["id"]),
            "url": c["html_url"],
            "body": c["body"],
            "isMinimized": c["id"] in self.fake.minimized,
            "author": {"login": login.removesuffix("[bot]"), "__typename": "Bot" if bot else "User"},
        }


def handle(fake: FakeGitHub, rec: Recorded) -> tuple[int, Any]:
    """(status, body) for a POST /graphql."""
    if rec.method != "POST":
        return 404, {"message": "Not Found"}
    if not rec.headers.get("authorization", "").startswith("Bearer "):
        return 401, {"message": "This endpoint requires you to be authenticated."}
    try:
        doc = json.loads(rec.body)
        query, variables = doc["query"], doc.get("variables") or {}
        declared, fields = _Parser(query).document()
        _check(fields, "Query", declared, "")
        missing = [v for v, t in declared.items() if t.endswith("!") and variables.get(v) is None]
        if missing:
            raise QueryError(f"Variable ${missing[0]} of required type {declared[missing[0]]} was not provided.")
    except (ValueError, KeyError, TypeError, QueryError) as e:
        fake.violations.append(f"graphql: {type(e).__name__}: {e}")
        return 200, {"errors": [{"message": str(e)}]}
    try:
        resolver = _Resolver(fake)
        return 200, {"data": resolver.resolve(fields, resolver.root(), variables)}
    except QueryError as e:  # GitHub's answer for a query it can parse but not run (a missing repository)
        return 200, {"data": None, "errors": [{"type": "NOT_FOUND", "message": str(e)}]}
