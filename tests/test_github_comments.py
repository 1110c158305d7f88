"""The sticky PR comment against the fake GitHub: found across pages, only ours (whatever the token), never a
minimized one, created then updated, and not sent again when it already says the same."""

from __future__ import annotations

import pytest

from verifily_action.github.comments import (
    MAX_BODY,
    current_login,
    find_sticky,
    identity,
    marker,
    truncate_body,
    upsert_sticky,
)

pytestmark = pytest.mark.unit

REPO = "Codertocat/Hello-World"


def test_marker_is_per_workflow_and_config_and_inert():
    a = marker("eval.yml", "train.yaml")
    assert a == marker("eval.yml", "train.yaml")
    assert a != marker("eval.yml", "other.yaml") and a != marker("nightly.yml", "train.yaml")
    evil = marker("x -->", "<script>")
    assert evil.startswith("<!--") and evil.count("-->") == 1 and "<script>" not in evil


def test_sticky_is_found_on_the_third_page_and_updated(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    for i in range(230):
        fake_github.add_comment(2, f"chatter {i}", login="someone")
    ours = fake_github.add_comment(2, f"{mark}\nold report")
    for i in range(5):
        fake_github.add_comment(2, f"more {i}", login="someone")
    res = upsert_sticky(gh, REPO, 2, "new report", mark)
    assert res.created is False and res.id == ours["id"]
    assert ours["body"] == f"{mark}\nnew report"
    assert len(fake_github.calls("POST", r"^/graphql$")) == 3  # 235 comments: 3 pages of 100
    assert not fake_github.calls("POST", r"/comments$")
    assert len(fake_github.calls("PATCH", rf"/issues/comments/{ours['id']}$")) == 1


def test_first_run_creates_second_run_updates(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    first = upsert_sticky(gh, REPO, 2, "report 1", mark)
    second = upsert_sticky(gh, REPO, 2, "report 2", mark)
    assert first.created and not second.created and first.id == second.id
    assert [c["body"] for c in fake_github.comments[2]] == [f"{mark}\nreport 2"]
    assert second.url.endswith(f"#issuecomment-{first.id}")


def test_a_marker_pasted_by_someone_else_is_not_ours(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    theirs = fake_github.add_comment(2, f"quoting: {mark}", login="mallory")
    res = upsert_sticky(gh, REPO, 2, "report", mark)
    assert res.created and theirs["body"] == f"quoting: {mark}"
    found = find_sticky(gh, REPO, 2, mark)
    assert found.comment.id == res.id and found.author == "github-actions[bot]"


def test_rest_login_is_bot_for_installation_tokens_and_login_for_pats(fake_github, gh):
    assert current_login(gh) == "github-actions[bot]"  # /user answers 403 to GITHUB_TOKEN
    fake_github.user_login = "verifily-bot"
    assert current_login(gh) == "verifily-bot"


def test_identity_compares_logins_as_every_api_spells_them():
    app = identity("my-app[bot]")  # a viewer, REST's user.login, the comment-author input
    assert app == identity("my-app", "Bot") == identity("My-App[bot]") == (True, "my-app")  # GraphQL: slug + Bot
    assert identity("my-app", "User") != app and identity("my-app") != app  # a person called my-app is not the app


def test_an_app_token_finds_its_own_comment_through_graphql(fake_github, gh):
    """GET /user answers 403 to an App's installation token; GraphQL's viewer says `<slug>[bot]`."""
    fake_github.app_token("verifily-app")
    mark = marker("eval.yml", "train.yaml")
    fake_github.add_comment(2, f"{mark}\nby the actions bot", login="github-actions[bot]")
    fake_github.add_comment(2, f"{mark}\nby a person called verifily-app", login="verifily-app")
    ours = fake_github.add_comment(2, f"{mark}\nold report")  # by verifily-app[bot]
    res = upsert_sticky(gh, REPO, 2, "new report", mark)
    assert not res.created and res.id == ours["id"] and ours["body"] == f"{mark}\nnew report"
    assert res.url == ours["html_url"]
    assert not fake_github.calls("GET", r"^/user$")  # never needed: GraphQL answered
    assert [c["body"].split("\n")[1] for c in fake_github.comments[2]] == [
        "by the actions bot",
        "by a person called verifily-app",
        "new report",
    ]


def test_graphql_failing_falls_back_to_user_then_the_actions_bot(fake_github, gh, capsys):
    mark = marker("eval.yml", "train.yaml")
    ours = fake_github.add_comment(2, f"{mark}\nold report")  # github-actions[bot]
    fake_github.fault("POST", r"^/graphql$", 502, times=99)
    res = upsert_sticky(gh, REPO, 2, "new report", mark)
    assert res.id == ours["id"] and not res.created
    assert len(fake_github.calls("GET", r"^/user$")) == 1  # 403: an installation token, so the actions bot
    assert "GraphQL API could not say who this token is" in capsys.readouterr().out


def test_graphql_failing_with_an_app_token_uses_the_comment_author_input(fake_github, gh):
    fake_github.app_token("verifily-app")
    fake_github.fault("POST", r"^/graphql$", 502, times=99)
    mark = marker("eval.yml", "train.yaml")
    ours = fake_github.add_comment(2, f"{mark}\nold report")  # by verifily-app[bot]
    res = upsert_sticky(gh, REPO, 2, "new report", mark, fallback_author="verifily-app[bot]")
    assert res.id == ours["id"] and not res.created and len(fake_github.comments[2]) == 1
    assert not fake_github.calls("GET", r"^/user$")
    # without the input the App's comment is not found (/user: 403, so github-actions[bot]): a new one is posted
    again = upsert_sticky(gh, REPO, 2, "newer report", mark)
    assert again.created and len(fake_github.comments[2]) == 2


def test_graphql_errors_fall_back_too(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    ours = fake_github.add_comment(2, f"{mark}\nold report")
    fake_github.fault("POST", r"^/graphql$", 200, body={"errors": [{"message": "Something went wrong"}]}, times=99)
    res = upsert_sticky(gh, REPO, 2, "new report", mark, fallback_author="github-actions[bot]")
    assert res.id == ours["id"] and ours["body"].endswith("new report")


def test_a_minimized_comment_is_not_reused(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    hidden = fake_github.add_comment(2, f"{mark}\noutdated report")
    fake_github.minimized.add(hidden["id"])
    res = upsert_sticky(gh, REPO, 2, "report", mark)
    assert res.created and res.id != hidden["id"] and hidden["body"] == f"{mark}\noutdated report"
    assert upsert_sticky(gh, REPO, 2, "report 2", mark).id == res.id  # the new one is the sticky from now on


def test_an_unchanged_body_is_not_sent_again(fake_github, gh):
    mark = marker("eval.yml", "train.yaml")
    first = upsert_sticky(gh, REPO, 2, "same report", mark)
    second = upsert_sticky(gh, REPO, 2, "same report", mark)
    assert second.id == first.id and (second.created, second.changed, second.status) == (False, False, "unchanged")
    assert second.url == first.url
    assert not fake_github.calls("PATCH") and len(fake_github.calls("POST", "/comments$")) == 1
    third = upsert_sticky(gh, REPO, 2, "other report", mark)
    assert third.status == "updated" and len(fake_github.calls("PATCH")) == 1


def test_a_rate_limited_graphql_query_is_not_guessed_around(fake_github, gh):
    from verifily_action.github.client import GitHubError

    limited = {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for installation."}]}
    fake_github.fault("POST", r"^/graphql$", 200, body=limited, times=99)
    with pytest.raises(GitHubError, match="rate limited") as e:
        upsert_sticky(gh, REPO, 2, "report", marker("w", "c"))
    assert e.value.rate_limited and not fake_github.calls("POST", "/comments$")


def test_body_is_cut_to_the_limit_with_a_note():
    body = "| a | b |\n" * 20000
    out = truncate_body(body)
    assert len(out.encode("utf-16-le")) // 2 <= MAX_BODY
    assert "cut to fit" in out and out.startswith("| a | b |")
    short = "small"
    assert truncate_body(short) is short
    emoji = "😀" * 40000  # two UTF-16 units each, as GitHub counts
    assert len(truncate_body(emoji).encode("utf-16-le")) // 2 <= MAX_BODY
    fenced = "```\n" + "x\n" * 70000
    assert truncate_body(fenced).count("```") % 2 == 0


def test_422_too_long_retries_shorter(fake_github, gh):
    mark = marker("w", "c")
    body422 = {
        "message": "Validation Failed",
        "documentation_url": "x",
        "errors": [
            {
                "resource": "IssueComment",
                "code": "custom",
                "field": "body",
                "message": "body is too long (maximum is 65536 characters)",
            }
        ],
    }
    fake_github.fault("POST", r"/issues/2/comments$", 422, {}, body422)
    res = upsert_sticky(gh, REPO, 2, "y" * 70000, mark)
    assert res.created
    posts = fake_github.calls("POST", r"/issues/2/comments$")
    assert len(posts) == 2 and len(posts[1].body) < len(posts[0].body)
    assert "cut to fit" in fake_github.comments[2][0]["body"]


def test_the_fake_answers_graphql_only_for_fields_of_githubs_schema(fake_github, gh):
    from verifily_action.github.client import GitHubError
    from verifily_action.github.graphql import graphql, graphql_url

    assert graphql(gh, "query { viewer { login } }") == {"viewer": {"login": "github-actions[bot]"}}
    with pytest.raises(GitHubError, match="Field 'name' doesn't exist on type 'User'"):
        graphql(gh, "query { viewer { name } }")
    with pytest.raises(GitHubError, match="Type mismatch on variable \\$n"):
        graphql(gh, 'query($n: String!) { repository(owner: "a", name: "b") { pullRequest(number: $n) { id } } }')
    assert len(fake_github.violations) == 2
    fake_github.violations.clear()
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/graphql"


def test_the_fakes_graphql_fields_are_githubs():
    """Every type, field, result type and argument type tests/fake_graphql.py accepts is in GitHub's GraphQL schema
    (@octokit/graphql-schema, installed by tests/npm_fixtures.sh), so a query the fake answers GitHub answers too."""
    import re

    from .fake_graphql import FIELDS
    from .github_fixtures import graphql_schema

    sdl = re.sub(r'"""(?:.|\n)*?"""|"[^"\n]*"', "", graphql_schema())  # descriptions out
    for type_name, fields in FIELDS.items():
        block = re.search(rf"^(?:type|interface) {type_name}\b[^{{]*\{{(.*?)^\}}", sdl, re.S | re.M)
        assert block, type_name
        for field, (result, args) in fields.items():
            if field == "__typename":
                continue
            m = re.search(rf"^\s+{field}(?:\(([^)]*)\))?:\s*([\[\]\w!]+)", block.group(1), re.M)
            assert m, f"{type_name}.{field}"
            assert (result or "") in ("", re.sub(r"[\[\]!]", "", m.group(2))), f"{type_name}.{field}: {m.group(2)}"
            declared = dict(re.findall(r"(\w+):\s*([\[\]\w!]+)", m.group(1) or ""))
            for arg, arg_type in args.items():
                assert declared.get(arg) == arg_type, f"{type_name}.{field}({arg}): {declared.get(arg)}"
