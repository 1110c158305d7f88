"""What the Action leaves in the runner's workspace and environment: every path it wrote there belongs to the
workspace's owner (the container runs as root; a self-hosted runner's next checkout must clean it up), and the
Hugging Face telemetry is off in the Action path as in the CLI."""

from __future__ import annotations

import os

import pytest

from verifily_action import telemetry
from verifily_action.action import flow as action
from verifily_action.action.ownership import hand_back
from verifily_action.errors import EXIT_INTERNAL

from .action_helpers import set_event
from .github_fixtures import webhook_example

pytestmark = pytest.mark.unit

OWNER = (4242, 4343)  # the runner's user on a self-hosted machine; not this process's

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")


def _written_paths(root):
    return [p for p in root.rglob("*")]


@needs_root
def test_everything_the_action_writes_in_the_workspace_gets_the_workspace_owner(fake_github, env, tmp_path):
    ws = env["ws"]
    os.chown(ws, *OWNER)
    (ws / "train.yaml").write_text("task: sft\n")
    os.chown(ws / "train.yaml", *OWNER)  # the checkout's own file
    outside = tmp_path / "outside.txt"
    outside.write_text("not the workspace's")
    stub_train = env["stub"].train

    def train(inputs):  # a Hugging Face cache under the workspace, a link out of it, a nested folder
        run_dir = stub_train(inputs)
        hub = ws / ".cache" / "huggingface" / "hub" / "models--tiny"
        hub.mkdir(parents=True)
        (hub / "config.json").write_text("{}")
        (run_dir / "link-out").symlink_to(outside)
        return run_dir

    env["monkeypatch"].setattr(env["stub"], "train", train)
    env["monkeypatch"].setenv("GITHUB_STEP_SUMMARY", str(ws / "summary.md"))  # a summary written in the workspace
    set_event(env, "push", webhook_example("push", pred=lambda x: x["ref"] == "refs/heads/master"))
    assert action.main() == 0
    written = _written_paths(ws)
    assert {"runs", "run1", "run_meta.json", "eval_results.json", "config.json", "summary.md"} <= {
        p.name for p in written
    }
    wrong = [
        f"{p.relative_to(ws)}: {st.st_uid}:{st.st_gid}"
        for p in written
        if (st := p.lstat()) and (st.st_uid, st.st_gid) != OWNER
    ]
    assert not wrong, wrong
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)  # a link is changed itself, never followed


@needs_root
def test_the_action_fails_cleanly_and_still_hands_back(fake_github, env):
    ws = env["ws"]
    os.chown(ws, *OWNER)

    def train(inputs):
        (ws / "runs" / "half").mkdir(parents=True)
        raise RuntimeError("out of memory")

    env["monkeypatch"].setattr(env["stub"], "train", train)
    set_event(env, "push", webhook_example("push"))
    assert action.main() == EXIT_INTERNAL
    assert all((p.stat().st_uid, p.stat().st_gid) == OWNER for p in _written_paths(ws))


def test_hand_back_does_nothing_when_this_user_owns_the_workspace(tmp_path):
    (tmp_path / "a").write_text("x")
    assert hand_back(tmp_path) == 0
    assert hand_back(tmp_path / "missing") == 0


def test_the_action_turns_hugging_face_telemetry_off_unless_the_user_chose(fake_github, env):
    set_event(env, "push", webhook_example("push"))
    for name in telemetry.OFF:
        env["monkeypatch"].delenv(name, raising=False)
    assert action.main() == 0
    assert {k: os.environ.get(k) for k in telemetry.OFF} == telemetry.OFF == {"HF_HUB_DISABLE_TELEMETRY": "1"}
    env["monkeypatch"].setenv("HF_HUB_DISABLE_TELEMETRY", "0")
    assert action.main() == 0
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "0"
