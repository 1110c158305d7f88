"""Sigstore keyless signatures of a run's root hash (sigstore.json, `runs.keyless`): checked against a real production
bundle (tests/fixtures/sigstore, a GitHub Actions release workflow's signature) with Sigstore's own verifier and the
trust root shipped in the `sigstore` package; signing up to the point this machine can reach (the job's OIDC token
from a local token endpoint speaking GitHub's protocol; Fulcio and Rekor are unreachable here)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.builders import sealed_run
from tests.paths import REPO
from verifily_action.action.inputs import read_inputs
from verifily_action.action.signing import sign_keyless, untrusted
from verifily_action.errors import VerifilyError
from verifily_action.runs import chain, keyless
from verifily_action.runs.layout import SIGSTORE_BUNDLE
from verifily_action.runs.verify import verify_run

pytestmark = pytest.mark.unit

BUNDLE = REPO / "tests" / "fixtures" / "sigstore" / "rfc8785-0.1.2.whl.sigstore"
DIGEST = "c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201"
IDENTITY = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Never reach for the network's trust root; keep sigstore's TUF cache out of the home folder."""
    monkeypatch.setenv(keyless.OFFLINE_ENV, "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def _digest(hex_digest: str = DIGEST):
    from sigstore.hashes import HashAlgorithm, Hashed

    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(hex_digest))


def test_a_real_bundle_verifies_for_its_identity_and_no_other():
    data = BUNDLE.read_bytes()
    matched, _ = keyless.verify_bundle(data, _digest(), ["https://example.com/not-it", IDENTITY])
    assert matched == IDENTITY
    with pytest.raises(VerifilyError, match="not from a trusted identity") as e:
        keyless.verify_bundle(data, _digest(), [IDENTITY.replace("v0.1.2", "v0.1.3")])
    assert "SANs" in e.value.message
    with pytest.raises(VerifilyError, match="not from a trusted identity"):  # right SAN, another issuer
        keyless.verify_bundle(data, _digest(), [IDENTITY], issuer="https://accounts.google.com")


def test_a_real_bundle_over_other_bytes_is_refused():
    with pytest.raises(VerifilyError, match="does not sign this run's root hash"):
        keyless.verify_bundle(BUNDLE.read_bytes(), _digest("00" * 32), [IDENTITY])
    with pytest.raises(VerifilyError, match="does not sign this run's root hash"):
        keyless.verify_bundle(BUNDLE.read_bytes(), keyless.message("ab" * 32), [IDENTITY])


def test_a_tampered_bundle_is_refused():
    doc = json.loads(BUNDLE.read_text())
    sig = doc["messageSignature"]["signature"]
    doc["messageSignature"]["signature"] = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]
    with pytest.raises(VerifilyError):
        keyless.verify_bundle(json.dumps(doc).encode(), _digest(), [IDENTITY])
    with pytest.raises(VerifilyError, match="not a Sigstore bundle"):
        keyless.verify_bundle(b'{"mediaType": "nope"}', _digest(), [IDENTITY])


def test_verify_only_requires_a_bundle_that_signs_this_root(cli, tmp_path):
    run = sealed_run(tmp_path)
    # no bundle
    out = cli("reproduce", "--verify-only", str(run), "--trusted-identity", IDENTITY)
    assert out.returncode == 1 and "has no keyless signature (sigstore.json)" in out.stderr, out.stderr
    # a real bundle, but over another artifact: it does not sign this run's root
    shutil.copy(BUNDLE, run / SIGSTORE_BUNDLE)
    out = cli("reproduce", "--verify-only", str(run), "--trusted-identity", IDENTITY)
    assert out.returncode == 1 and "does not sign this run's root hash" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    # outside the chain: without an identity to check, the bundle is neither required nor an unrecorded file
    assert cli("reproduce", "--verify-only", str(run)).returncode == 0
    (run / SIGSTORE_BUNDLE).write_text("not json")
    out = cli("reproduce", "--verify-only", str(run), "--trusted-identity", IDENTITY)
    assert out.returncode == 1 and "not a Sigstore bundle" in out.stderr


def test_the_keyless_options_are_checked_first(cli, tmp_path):
    run = sealed_run(tmp_path)
    out = cli("reproduce", str(run), "--trusted-identity", IDENTITY)
    assert out.returncode == 2 and "go with --verify-only" in out.stderr
    out = cli("reproduce", "--verify-only", str(run), "--oidc-issuer", "https://accounts.google.com")
    assert out.returncode == 2 and "--oidc-issuer needs --trusted-identity" in out.stderr


def test_a_reseal_removes_the_bundle_and_the_chain_cannot_hold_it(tmp_path):
    run = sealed_run(tmp_path)
    shutil.copy(BUNDLE, run / SIGSTORE_BUNDLE)
    meta = json.loads((run / "run_meta.json").read_text())
    entries = json.loads((run / "hashes.json").read_text())["entries"]
    chain.seal(run, {k: v for k, v in entries.items() if k != "run_meta:canonical"}, note="re-sealed")
    assert not (run / SIGSTORE_BUNDLE).exists()  # it signed the old root
    entries[SIGSTORE_BUNDLE] = "0" * 64
    (run / SIGSTORE_BUNDLE).write_text("{}")
    chain.write_entries(run, entries)
    report = verify_run(run, inputs=False)
    assert any("signature" in p.message and SIGSTORE_BUNDLE in p.message for p in report.problems), [
        p.message for p in report.problems
    ]
    assert meta["root_hash"] != json.loads((run / "run_meta.json").read_text())["root_hash"]


def test_a_baseline_without_a_trusted_keyless_signature_is_untrusted(tmp_path):
    run = sealed_run(tmp_path)
    assert untrusted(run, [], None) == ""
    why = untrusted(run, [], [IDENTITY])
    assert "no keyless signature" in why and str(run) not in why
    shutil.copy(BUNDLE, run / SIGSTORE_BUNDLE)
    assert "does not sign this run's root hash" in untrusted(run, [], [IDENTITY])


def test_keyless_inputs_are_validated():
    with pytest.raises(VerifilyError, match="keyless-signing") as e:
        read_inputs({"INPUT_KEYLESS-SIGNING": "yes", "INPUT_TRUSTED-IDENTITIES": "not an identity"})
    assert "trusted-identities" in e.value.message
    got = read_inputs({"INPUT_TRUSTED-IDENTITIES": f"{IDENTITY}\nrelease@example.com\n"})
    assert got.keyless_signing == "auto" and got.trusted_identities == [IDENTITY, "release@example.com"]


class _TokenEndpoint:
    """GitHub's OIDC token endpoint as a job sees it: GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD with
    `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` answers {"value": JWT} (actions/toolkit core's
    OidcClient). The JWT carries the claims GitHub's tokens carry; sigstore reads them unverified, as Fulcio checks
    the signature."""

    def __init__(self) -> None:
        import jwt

        now = int(time.time())
        claims = {
            "iss": keyless.GITHUB_ISSUER,
            "aud": "sigstore",
            "sub": "repo:octo/app:ref:refs/heads/main",
            "job_workflow_ref": "octo/app/.github/workflows/verifily.yml@refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        self.token = jwt.encode(claims, "a stand-in for github's signing key, 32+ bytes", algorithm="HS256")
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization", "")))
                body = json.dumps({"value": outer.token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oidc/token?api-version=2.0"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oidc(monkeypatch):
    endpoint = _TokenEndpoint()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", endpoint.url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token")
    yield endpoint
    endpoint.close()


def test_auto_skips_a_job_without_an_oidc_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    run = sealed_run(tmp_path)
    assert sign_keyless(run, read_inputs({})) is None
    assert "no OIDC token" in capsys.readouterr().out and not (run / SIGSTORE_BUNDLE).exists()
    with pytest.raises(VerifilyError, match="no OIDC token") as e:
        sign_keyless(run, read_inputs({"INPUT_KEYLESS-SIGNING": "true"}))
    assert "id-token: write" in (e.value.hint or "")
    assert sign_keyless(run, read_inputs({"INPUT_KEYLESS-SIGNING": "false"})) is None


def test_signing_asks_github_for_a_sigstore_token_then_reports_what_failed(tmp_path, oidc, capsys):
    """The token request is GitHub's protocol; Sigstore itself cannot be reached from here, which `auto` reports
    as a warning (the job goes on, the run unsigned) and `true` as the job's error."""
    run = sealed_run(tmp_path)
    assert sign_keyless(run, read_inputs({})) is None
    path, auth = oidc.requests[0]
    assert parse_qs(urlparse(path).query)["audience"] == ["sigstore"] and auth == "bearer request-token"
    out = capsys.readouterr().out
    assert "::warning::the run is not signed keyless: keyless signing failed at Sigstore" in out, out
    assert not (run / SIGSTORE_BUNDLE).exists()
    with pytest.raises(VerifilyError, match="failed at Sigstore"):
        sign_keyless(run, read_inputs({"INPUT_KEYLESS-SIGNING": "true"}))


def test_signer_identity_reads_the_certificate(tmp_path):
    run = sealed_run(tmp_path)
    assert keyless.signer_identity(run) is None
    shutil.copy(BUNDLE, run / SIGSTORE_BUNDLE)
    assert keyless.signer_identity(Path(run)) == IDENTITY
