"""GitHubClient against the fake GitHub: retries, rate limits, pagination, redirects, no token leaks."""

from __future__ import annotations

import logging

import pytest

from verifily_action.github.client import GitHubClient, GitHubError

from .github_fake import TOKEN

pytestmark = pytest.mark.unit

COMMENTS = "/repos/Codertocat/Hello-World/issues/2/comments"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_then_succeed(fake_github, gh, status):
    fake_github.add_comment(2, "hello")
    fake_github.fault("GET", COMMENTS, status, times=2)
    items = list(gh.paginate(COMMENTS))
    assert [c["body"] for c in items] == ["hello"]
    assert len(fake_github.calls("GET", COMMENTS)) == 3
    assert len(gh.sleeps) >= 1  # backoff between attempts (recorded, not slept)


def test_server_errors_give_up_after_the_retry_budget(fake_github):
    client = GitHubClient(TOKEN, fake_github.api_url, retries=2, backoff=0, sleep=lambda s: None)
    fake_github.fault("GET", COMMENTS, 502, times=10)
    with pytest.raises(GitHubError) as e:
        client.get_json(COMMENTS)
    assert e.value.status == 502
    assert len(fake_github.calls("GET", COMMENTS)) == 3  # first try + 2 retries


def test_secondary_rate_limit_honours_retry_after(fake_github, gh):
    body = {"message": "You have exceeded a secondary rate limit.", "documentation_url": "x"}
    fake_github.fault("POST", COMMENTS, 403, {"Retry-After": "7"}, body)
    r = gh.request("POST", COMMENTS, json={"body": "hi"})
    assert r.status_code == 201
    assert gh.sleeps == [7.0]
    assert len(fake_github.calls("POST", COMMENTS)) == 2


def test_429_with_retry_after(fake_github, gh):
    fake_github.fault("GET", COMMENTS, 429, {"Retry-After": "3"})
    assert gh.get_json(COMMENTS) == []
    assert gh.sleeps == [3.0]


def test_primary_rate_limit_waits_until_reset(fake_github, gh, monkeypatch):
    import verifily_action.github.client as client_mod

    monkeypatch.setattr(client_mod.time, "time", lambda: 1_000_000.0)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000020"}
    fake_github.fault("GET", COMMENTS, 403, headers, {"message": "API rate limit exceeded", "documentation_url": "x"})
    assert gh.get_json(COMMENTS) == []
    assert gh.sleeps == [21.0]  # until the reset, plus a second of slack


def test_secondary_limit_without_headers_waits_a_minute(fake_github, gh):
    body = {"message": "You have exceeded a secondary rate limit. Please wait.", "documentation_url": "x"}
    fake_github.fault("GET", COMMENTS, 403, {}, body)
    assert gh.get_json(COMMENTS) == []
    assert gh.sleeps == [60.0]  # GitHub's advice: at least a minute


SECONDARY = {"message": "You have exceeded a secondary rate limit.", "documentation_url": "x"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "asks"),
    [
        (429, {"Retry-After": "3600"}, None, 3600),
        (403, {"Retry-After": "3600"}, SECONDARY, 3600),
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1003599"}, None, 3600),  # primary: until reset
        (403, {}, SECONDARY, 60),  # no header: at least a minute, more than this client's cap
    ],
    ids=["429 retry-after", "secondary retry-after", "primary reset", "secondary no header"],
)
def test_rate_limit_longer_than_max_wait_fails_fast_with_the_real_reason(
    fake_github, monkeypatch, status, headers, body, asks
):
    import verifily_action.github.client as client_mod

    monkeypatch.setattr(client_mod.time, "time", lambda: 1_000_000.0)
    sleeps: list[float] = []
    client = GitHubClient(TOKEN, fake_github.api_url, max_wait=10 if asks == 60 else 300, sleep=sleeps.append)
    fake_github.fault("GET", COMMENTS, status, headers, body, times=100)
    with pytest.raises(GitHubError) as e:
        client.get_json(COMMENTS)
    cap = 10 if asks == 60 else 300
    assert e.value.message.startswith(f"rate limited: GitHub asks to wait {asks} s, more than the cap {cap} s")
    assert e.value.rate_limited and "permission" not in (e.value.hint or "") and "rate" in (e.value.hint or "")
    assert sleeps == [] and len(fake_github.calls("GET", COMMENTS)) == 1  # no wait, no second try


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "30"}), (403, {"Retry-After": "30"})])
def test_a_persistent_rate_limit_is_waited_out_once(fake_github, gh, status, headers):
    fake_github.fault("GET", COMMENTS, status, headers, SECONDARY, times=100)
    with pytest.raises(GitHubError) as e:
        gh.get_json(COMMENTS)
    assert (
        e.value.message.startswith("rate limited: GitHub still refuses after a wait of 30 s") and e.value.rate_limited
    )
    assert gh.sleeps == [30.0] and len(fake_github.calls("GET", COMMENTS)) == 2


def test_a_server_error_asking_for_a_wait_beyond_the_cap_is_not_waited_for(fake_github, gh):
    fake_github.fault("GET", COMMENTS, 503, {"Retry-After": "3600"}, times=100)
    with pytest.raises(GitHubError) as e:
        gh.get_json(COMMENTS)
    assert "answered 503" in e.value.message and "asks to wait 3600 s, more than the cap 300 s" in e.value.message
    assert gh.sleeps == [] and len(fake_github.calls("GET", COMMENTS)) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(fake_github, gh, status, caplog):
    fake_github.fault("GET", COMMENTS, status, {}, {"message": f"nope {status}", "documentation_url": "x"})
    with caplog.at_level(logging.DEBUG), pytest.raises(GitHubError) as e:
        gh.get_json(COMMENTS)
    assert e.value.status == status
    assert len(fake_github.calls("GET", COMMENTS)) == 1
    assert gh.sleeps == []
    assert f"nope {status}" in e.value.message
    assert TOKEN not in e.value.render() and TOKEN not in caplog.text


def test_network_error_is_reported_without_token(caplog):
    client = GitHubClient(TOKEN, "http://127.0.0.1:9", retries=1, backoff=0, sleep=lambda s: None)
    with caplog.at_level(logging.DEBUG), pytest.raises(GitHubError) as e:
        client.get_json("user")
    assert "ConnectionError" in e.value.message
    assert TOKEN not in e.value.render() and TOKEN not in caplog.text


def test_pagination_follows_link_headers(fake_github, gh):
    for i in range(250):
        fake_github.add_comment(2, f"c{i}")
    items = list(gh.paginate(COMMENTS))
    assert [c["body"] for c in items] == [f"c{i}" for i in range(250)]
    pages = fake_github.calls("GET", COMMENTS)
    assert len(pages) == 3
    assert [r.query.get("page", ["1"])[0] for r in pages] == ["1", "2", "3"]
    assert all(r.query["per_page"] == ["100"] for r in pages)


def test_api_url_comes_from_env(monkeypatch, fake_github):
    monkeypatch.setenv("GITHUB_API_URL", fake_github.api_url + "/")
    client = GitHubClient(TOKEN)
    assert client.api_url == fake_github.api_url
    assert client.get_json(COMMENTS) == []


def test_download_follows_redirect_without_the_token(fake_github, gh, tmp_path):
    run = fake_github.add_run("a" * 40)
    art = fake_github.add_artifact(run["id"], "verifily-run", b"PK-not-really-a-zip")
    out = gh.download(f"repos/Codertocat/Hello-World/actions/artifacts/{art['id']}/zip", tmp_path / "a.zip", 1000)
    assert out.read_bytes() == b"PK-not-really-a-zip"
    blob_calls = fake_github.calls("GET", "/artifact-blobs/", host="blob")
    assert len(blob_calls) == 1
    assert "authorization" not in blob_calls[0].headers
    assert all(TOKEN not in v for v in blob_calls[0].headers.values())
    api_call = fake_github.calls("GET", "/zip$")[0]
    assert api_call.headers["authorization"] == f"Bearer {TOKEN}"


def test_download_size_limit(fake_github, gh, tmp_path):
    run = fake_github.add_run("a" * 40)
    art = fake_github.add_artifact(run["id"], "big", b"x" * 5000)
    with pytest.raises(GitHubError, match="exceeds the limit"):
        gh.download(f"repos/Codertocat/Hello-World/actions/artifacts/{art['id']}/zip", tmp_path / "a.zip", 1000)
