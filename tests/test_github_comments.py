"""The sticky PR comment against the fake GitHub: found across pages, only ours, created then updated."""

from __future__ import annotations

import pytest

from verifily_action.github.comments import (
    MAX_BODY,
    current_login,
    find_sticky,
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
    assert len(fake_github.calls("GET", r"/issues/2/comments$")) == 3  # 235 comments: 3 pages of 100
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
    assert find_sticky(gh, REPO, 2, mark, "github-actions[bot]")["id"] == res.id


def test_author_is_bot_for_installation_tokens_and_login_for_pats(fake_github, gh):
    assert current_login(gh) == "github-actions[bot]"  # /user answers 403 to GITHUB_TOKEN
    fake_github.user_login = "verifily-bot"
    assert current_login(gh) == "verifily-bot"


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
