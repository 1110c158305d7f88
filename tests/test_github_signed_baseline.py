"""The Action's signing inputs against the fake GitHub: `trusted-keys` makes a downloaded baseline count only when its
chain verifies and a trusted key signed its root hash ("No baseline: why" otherwise); `signing-key` is written to a
private file outside the workspace, masked in the log, and named by VERIFILY_SIGNING_KEY for every seal of the job."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from verifily_action.action import flow as action
from verifily_action.runs import signature

from .action_helpers import A_RUN, set_event
from .builders import recorded_run
from .github_fixtures import webhook_example, zip_of

pytestmark = pytest.mark.unit


def _members(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _pull_request_over(fake, env, members: dict[str, bytes]) -> int:
    """A pull request whose merge-base commit has a successful run with `members` as its artifact; returns its
    number after the flow ran."""
    pr = webhook_example("pull_request", "synchronize")
    base_sha, head_sha = pr["pull_request"]["base"]["sha"], pr["pull_request"]["head"]["sha"]
    run = fake.add_run(base_sha, branch="master")
    fake.add_artifact(run["id"], "verifily-run", zip_of(members))
    fake.merge_bases[f"{base_sha}...{head_sha}"] = base_sha
    set_event(env, "pull_request", pr)
    assert action.main() == 0
    return int(pr["number"])


@pytest.fixture
def keys(tmp_path):
    """Two key pairs: (private, public PEM text, key id) each."""
    out = []
    for name in ("ours", "theirs"):
        private, public, kid = signature.generate(tmp_path / "keys" / name)
        out.append((private, public.read_text(), kid))
    return out


@pytest.fixture
def signed_run(tmp_path, keys, monkeypatch):
    monkeypatch.setenv(signature.ENV, str(keys[0][0]))
    run = recorded_run(tmp_path / "baseline")
    monkeypatch.delenv(signature.ENV)
    assert (run / "signature.json").is_file()  # sealed with the key configured: signed
    return run


def test_a_baseline_signed_by_a_trusted_key_is_used(fake_github, env, keys, signed_run):
    env["monkeypatch"].setenv("INPUT_TRUSTED-KEYS", keys[1][1] + "\n" + keys[0][1])  # PEM text, two keys
    number = _pull_request_over(fake_github, env, _members(signed_run))
    body = fake_github.comments[number][0]["body"]
    assert "No baseline" not in body and f"vs {'a' * 64}" in body  # the stub compared with the downloaded run
    assert env["stub"].baselines[-1] is not None


def test_a_key_id_works_as_well_as_the_pem(fake_github, env, keys, signed_run):
    env["monkeypatch"].setenv("INPUT_TRUSTED-KEYS", keys[0][2].upper())
    number = _pull_request_over(fake_github, env, _members(signed_run))
    assert "No baseline" not in fake_github.comments[number][0]["body"]


def test_a_baseline_signed_by_another_key_is_no_baseline(fake_github, env, keys, signed_run, capsys):
    env["monkeypatch"].setenv("INPUT_TRUSTED-KEYS", keys[1][1])
    number = _pull_request_over(fake_github, env, _members(signed_run))
    body = fake_github.comments[number][0]["body"]
    assert "No baseline:" in body and "is not a run signed by a trusted key" in body and "not a trusted key" in body
    assert env["stub"].baselines == [None]  # this run reported alone
    assert "::warning::no baseline:" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["unsigned", "tampered", "not a run"])
def test_an_unsigned_or_altered_baseline_is_no_baseline(fake_github, env, keys, signed_run, case):
    members = _members(signed_run)
    if case == "unsigned":
        del members["signature.json"]
    elif case == "tampered":
        members["adapter/adapter_model.safetensors"] = b"other weights"
    else:
        members = dict(A_RUN)
    env["monkeypatch"].setenv("INPUT_TRUSTED-KEYS", keys[0][1])
    number = _pull_request_over(fake_github, env, members)
    body = fake_github.comments[number][0]["body"]
    assert "No baseline:" in body and "is not a run signed by a trusted key" in body, body
    assert env["stub"].baselines == [None]


def test_without_trusted_keys_an_unsigned_baseline_is_used(fake_github, env, signed_run):
    members = _members(signed_run)
    del members["signature.json"]
    number = _pull_request_over(fake_github, env, members)
    assert "No baseline" not in fake_github.comments[number][0]["body"]


def test_a_bad_trusted_key_is_one_clear_error(fake_github, env, signed_run, capsys):
    env["monkeypatch"].setenv("INPUT_TRUSTED-KEYS", "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")
    pr = webhook_example("pull_request", "synchronize")
    base_sha, head_sha = pr["pull_request"]["base"]["sha"], pr["pull_request"]["head"]["sha"]
    run = fake_github.add_run(base_sha, branch="master")
    fake_github.add_artifact(run["id"], "verifily-run", zip_of(_members(signed_run)))
    fake_github.merge_bases[f"{base_sha}...{head_sha}"] = base_sha
    set_event(env, "pull_request", pr)
    assert action.main() == 2
    err = capsys.readouterr()
    assert "input trusted-keys: a PEM block: not a PEM public key" in err.err and "Traceback" not in err.err


def test_the_signing_key_input_is_private_masked_and_named_for_the_seals(fake_github, env, keys, capsys):
    monkeypatch = env["monkeypatch"]
    monkeypatch.delenv(signature.ENV, raising=False)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the flow sets VERIFILY_SIGNING_KEY: keep it in here
    pem = keys[0][0].read_text()
    monkeypatch.setenv("INPUT_SIGNING-KEY", pem)
    set_event(env, "push", webhook_example("push", pred=lambda x: x["ref"] == "refs/heads/master"))
    assert action.main() == 0
    path = Path(os.environ[signature.ENV])
    assert path.read_text().strip() == pem.strip()
    assert not path.is_relative_to(env["ws"])  # never uploaded with the workspace or the run
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signature.configured_key() is not None
    out = capsys.readouterr().out
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    assert all(f"::add-mask::{line}" in out for line in body)


def test_a_bad_signing_key_fails_first_with_a_clear_error(env, capsys):
    monkeypatch = env["monkeypatch"]
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.setenv("INPUT_SIGNING-KEY", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")
    set_event(env, "push", webhook_example("push", pred=lambda x: x["ref"] == "refs/heads/master"))
    assert action.main() == 2
    err = capsys.readouterr().err
    assert "is not an unencrypted PEM private key" in err and "Traceback" not in err
    assert env["stub"].n == 0  # nothing trained
