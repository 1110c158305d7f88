"""A run's root hash signed with a local Ed25519 key: `verifily keys init`, signing at every seal when
VERIFILY_SIGNING_KEY is set, and `reproduce --verify-only --require-signature / --trusted-key`. The threat: whoever
edits an adapter or an eval result can recompute every hash and the root, but cannot sign the new root."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tests.builders import sealed_run
from verifily_action.errors import VerifilyError
from verifily_action.hashing import sha256_file
from verifily_action.runs import chain
from verifily_action.runs.cache import find_cached
from verifily_action.runs.signature import generate
from verifily_action.runs.verify import verify_run

pytestmark = pytest.mark.unit

ENV = "VERIFILY_SIGNING_KEY"


@pytest.fixture
def keys(tmp_path):
    """(private key, public key, key id) in a private folder."""
    return generate(tmp_path / "keys")


@pytest.fixture
def signed(tmp_path, keys, monkeypatch):
    """A run sealed while VERIFILY_SIGNING_KEY named the key; the variable is unset again afterwards."""
    monkeypatch.setenv(ENV, str(keys[0]))
    run = sealed_run(tmp_path)
    monkeypatch.delenv(ENV)
    return run


def forge(run: Path) -> None:
    """Change an eval-like result and recompute every hash and the root, as anyone without the key can."""
    f = run / "train_log.jsonl"
    f.write_text('{"step": 1, "loss": 0.01}\n')
    entries = chain.read_entries(run)
    entries["train_log.jsonl"] = sha256_file(f)
    chain.seal(run, entries)


def test_keys_init_writes_a_key_pair_only_its_owner_can_read(cli, tmp_path):
    folder = tmp_path / "cfg" / "keys"
    out = cli("keys", "init", "--dir", str(folder))
    assert out.returncode == 0, out.stderr
    private, public = folder / "signing_key.pem", folder / "signing_key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert f"export {ENV}={private}" in out.stdout and "key id:" in out.stdout
    again = cli("keys", "init", "--dir", str(folder))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    before = private.read_bytes()
    assert cli("keys", "init", "--dir", str(folder), "--force").returncode == 0
    assert private.read_bytes() != before


def test_keys_init_defaults_to_the_user_config_folder(cli, tmp_path):
    out = cli("keys", "init", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "xdg" / "verifily" / "keys" / "signing_key.pem").is_file()


def test_a_run_sealed_with_a_key_verifies_against_that_key(cli, signed, keys):
    private, public, kid = keys
    doc = json.loads((signed / "signature.json").read_text())
    assert doc["root_hash"] == json.loads((signed / "run_meta.json").read_text())["root_hash"]
    assert doc["key_id"] == kid
    report = verify_run(signed, trusted_keys=[kid])
    assert report.ok and (report.signed_by, report.trusted) == (kid, True), report.problems
    for trusted in (str(public), kid):
        out = cli("reproduce", "--verify-only", str(signed), "--trusted-key", trusted)
        assert out.returncode == 0, out.stderr
        assert f"signed by key {kid[:16]} (trusted)" in out.stdout
    own = cli("reproduce", "--verify-only", str(signed), "--require-signature", env={ENV: str(private)})
    assert own.returncode == 0 and "(trusted)" in own.stdout, own.stderr
    doc = json.loads(cli("reproduce", "--verify-only", str(signed), "--json", "--trusted-key", kid).stdout)
    assert doc["signature"] == {"key_id": kid, "trusted": True}


def test_a_forged_run_fails_require_signature(cli, signed, keys):
    """Every hash and the root recomputed after an edit: the chain holds, the signature cannot follow."""
    _, public, _ = keys
    old = (signed / "signature.json").read_bytes()
    forge(signed)
    assert chain.verify_chain(signed) == [] and not (signed / "signature.json").exists()
    out = cli("reproduce", "--verify-only", str(signed), "--trusted-key", str(public))
    assert out.returncode == 1 and "the run is not signed (no signature.json)" in out.stderr
    (signed / "signature.json").write_bytes(old)  # the old signature put back: it signs another root
    out = cli("reproduce", "--verify-only", str(signed), "--trusted-key", str(public))
    assert out.returncode == 1 and "not this run's root" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_run_signed_by_another_key_is_not_trusted(cli, signed, keys, tmp_path, monkeypatch):
    _, public, kid = keys
    other, _, other_id = generate(tmp_path / "forger")
    monkeypatch.setenv(ENV, str(other))
    forge(signed)  # the forger re-signs with their own key
    assert json.loads((signed / "signature.json").read_text())["key_id"] == other_id
    out = cli("reproduce", "--verify-only", str(signed), "--trusted-key", str(public))
    assert out.returncode == 1
    assert f"signed by key {other_id}, which is not a trusted key" in out.stderr
    assert verify_run(signed).ok  # without a trusted key the chain and its (valid) signature are consistent


def test_an_unsigned_run_still_verifies_without_require_signature(cli, tmp_path, keys):
    run = sealed_run(tmp_path)
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0
    out = cli("reproduce", "--verify-only", str(run), "--require-signature", "--trusted-key", str(keys[1]))
    assert out.returncode == 1 and "not signed" in out.stderr


def test_a_damaged_signature_fails_verify_and_the_cache_even_unrequired(signed, tmp_path):
    doc = json.loads((signed / "signature.json").read_text())
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[0] ^= 1
    doc["signature"] = base64.b64encode(bytes(sig)).decode()
    (signed / "signature.json").write_text(json.dumps(doc))
    report = verify_run(signed)
    (bad,) = report.problems
    assert bad.file == str(signed / "signature.json") and bad.json_path == "$.signature"
    assert "does not verify" in bad.message
    assert find_cached(tmp_path, "a" * 64) is None
    (signed / "signature.json").write_text('{"schema_version": 1}')
    assert "not a valid signature" in verify_run(signed).problems[0].message


def test_require_signature_without_a_key_to_trust_is_a_clear_error(cli, signed, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    out = cli("reproduce", "--verify-only", str(signed), "--require-signature")
    assert out.returncode == 2 and "needs a key to trust" in out.stderr and "--trusted-key" in out.stderr
    bad = cli("reproduce", "--verify-only", str(signed), "--trusted-key", str(signed / "config.yaml"))
    assert bad.returncode == 2 and "not a PEM public key" in bad.stderr
    alone = cli("reproduce", str(signed), "--require-signature")
    assert alone.returncode == 2 and "go with --verify-only" in alone.stderr


@pytest.mark.parametrize("case", ["missing", "too open", "not a key", "fifo"])
def test_a_bad_signing_key_is_a_clear_error_before_any_work(cli, tmp_path, keys, case):
    import os

    key = tmp_path / "key.pem"
    if case == "too open":
        key.write_bytes(keys[0].read_bytes())
        key.chmod(0o644)
    elif case == "not a key":
        key.write_text("hello\n")
        key.chmod(0o600)
    elif case == "fifo":
        os.mkfifo(key)
    want = {"missing": "cannot be read", "too open": "chmod 600", "not a key": "not an unencrypted PEM private key",
            "fifo": "not a regular file"}[case]  # fmt: skip
    for args in (("train", "--config", str(tmp_path / "train.yaml")), ("eval", "--run", str(tmp_path / "run"))):
        out = cli(*args, env={ENV: str(key)})
        assert out.returncode == 2, (args, out.stderr)
        assert want in out.stderr and "Traceback" not in out.stderr


def test_a_bad_key_fails_the_seal_before_it_writes(tmp_path, monkeypatch):
    run = sealed_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere.pem"))
    with pytest.raises(VerifilyError, match="signing key"):
        chain.add_artifacts(run, [run / "train_log.jsonl"])
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_every_seal_signs_its_new_root_and_an_unkeyed_seal_drops_the_stale_signature(signed, keys, monkeypatch):
    (signed / "notes.txt").write_text("an eval result\n")
    monkeypatch.setenv(ENV, str(keys[0]))
    root = chain.add_artifacts(signed, [signed / "notes.txt"])
    assert json.loads((signed / "signature.json").read_text())["root_hash"] == root
    assert verify_run(signed, trusted_keys=[keys[2]]).ok
    monkeypatch.delenv(ENV)
    (signed / "more.txt").write_text("another\n")
    chain.add_artifacts(signed, [signed / "more.txt"])
    assert not (signed / "signature.json").exists() and verify_run(signed).ok


def test_the_chain_cannot_list_the_signature(signed):
    entries = chain.read_entries(signed)
    entries["signature.json"] = sha256_file(signed / "signature.json")
    chain.write_entries(signed, entries)
    assert any("'signature.json'" in p.message for p in verify_run(signed).problems)
