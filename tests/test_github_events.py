"""Event parsing with real webhook payloads from @octokit/webhooks-examples."""

from __future__ import annotations

import json

import pytest

from verifily_action.errors import VerifilyError
from verifily_action.github.events import load_event, parse_event

from .github_fixtures import webhook_example

pytestmark = pytest.mark.unit


def test_pull_request_same_repo():
    payload = webhook_example("pull_request", "synchronize")
    ev = parse_event("pull_request", payload, {})
    pr = ev.pull_request
    assert pr.number == payload["number"]
    assert (
        pr.head_sha == payload["pull_request"]["head"]["sha"] and pr.base_ref == payload["pull_request"]["base"]["ref"]
    )
    assert pr.base_sha == payload["pull_request"]["base"]["sha"]
    assert ev.repository == payload["repository"]["full_name"] and not ev.is_fork_pr


def test_pull_request_from_a_fork_and_from_a_deleted_fork():
    payload = webhook_example("pull_request", "opened")
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    assert parse_event("pull_request", payload, {}).is_fork_pr
    payload["pull_request"]["head"]["repo"] = None
    ev = parse_event("pull_request", payload, {})
    assert ev.is_fork_pr and ev.pull_request.head_repo is None


def test_push_to_a_branch():
    payload = webhook_example("push", pred=lambda x: x["ref"].startswith("refs/heads/"))
    ev = parse_event("push", payload, {"GITHUB_SHA": "ignored"})
    assert ev.sha == payload["after"] and ev.branch == payload["ref"].removeprefix("refs/heads/")
    assert ev.default_branch == payload["repository"]["default_branch"] and ev.pull_request is None


def test_workflow_run_with_and_without_pull_requests():
    payload = webhook_example("workflow_run", "completed", pred=lambda x: x["workflow_run"]["pull_requests"])
    ev = parse_event("workflow_run", payload, {})
    wr = ev.workflow_run
    assert wr.id == payload["workflow_run"]["id"] and wr.conclusion == "success"
    assert wr.pull_numbers == [p["number"] for p in payload["workflow_run"]["pull_requests"]]
    assert wr.head_sha == payload["workflow_run"]["head_sha"] and not wr.from_fork
    payload["workflow_run"]["head_repository"]["full_name"] = "mallory/octo-repo"
    payload["workflow_run"]["pull_requests"] = []  # GitHub leaves fork PRs out of this list
    ev = parse_event("workflow_run", payload, {})
    assert ev.workflow_run.from_fork and ev.workflow_run.pull_numbers == []


def test_load_event_from_env(tmp_path):
    payload = webhook_example("pull_request", "opened")
    p = tmp_path / "event.json"
    p.write_text(json.dumps(payload))
    ev = load_event({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(p)})
    assert ev.pull_request.number == payload["number"]
    with pytest.raises(VerifilyError, match="GITHUB_EVENT_NAME"):
        load_event({})
    with pytest.raises(VerifilyError, match="missing"):
        parse_event("pull_request", {"repository": payload["repository"]}, {})


def test_base_ref_falls_back_to_github_base_ref(tmp_path):
    payload = webhook_example("pull_request", "synchronize")
    base = payload["pull_request"]["base"]
    # the payload wins over the runner's variable when it has the ref
    assert parse_event("pull_request", payload, {"GITHUB_BASE_REF": "other"}).pull_request.base_ref == base["ref"]
    del base["ref"]
    (tmp_path / "event.json").write_text(json.dumps(payload))
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(tmp_path / "event.json")}
    ev = load_event({**env, "GITHUB_BASE_REF": "release/1.x"})  # as the runner sets it
    assert ev.pull_request.base_ref == "release/1.x" and ev.pull_request.base_sha == base["sha"]
    with pytest.raises(VerifilyError, match=r"missing 'pull_request\.base\.ref'"):
        parse_event("pull_request", payload, {})
    with pytest.raises(VerifilyError, match=r"missing 'pull_request\.base\.ref'"):
        parse_event("pull_request", payload, {"GITHUB_BASE_REF": ""})  # set but empty, as on other events
