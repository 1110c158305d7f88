"""Sigstore keyless signing of a run's root hash: the GitHub Actions job's OIDC identity, not a key anyone keeps.

In a workflow with `permissions: id-token: write`, the job can ask GitHub for an OIDC token; Sigstore's Fulcio
turns it into a short-lived certificate naming the workflow (its SAN is
`https://github.com/OWNER/REPO/.github/workflows/FILE@REF`, its issuer `https://token.actions.githubusercontent.com`),
the root hash is signed with it and the signature is logged in Rekor, the public transparency log. The result is one
Sigstore bundle, `sigstore.json` in the run (`layout.SIGSTORE_BUNDLE`): like signature.json it sits outside the chain
it signs, and a re-seal removes it.

* What is signed: `signature.PREFIX + root_hash` (the same message as the Ed25519 signature), as a hashedrekord.
* Checking: `check(run, root, identities)` verifies the bundle against Sigstore's public-good trust root, requires
  it to sign this run's root hash and its certificate to name one of `identities` (exact SANs) for `issuer`.
  The trust root is refreshed over TUF when the network allows it, else the one shipped with the installed
  `sigstore` package is used (VERIFILY_SIGSTORE_OFFLINE=1: never try the network).
* Forks' pull-request jobs get no OIDC token (GitHub withholds id-token from them): their runs are not signed.

`sigstore` is imported inside the functions: the rest of the tool never pays for it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..errors import Problem, VerifilyError
from .files import write_text_atomic
from .layout import SIGSTORE_BUNDLE
from .signature import PREFIX

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
OFFLINE_ENV = "VERIFILY_SIGSTORE_OFFLINE"
MAX_BUNDLE_BYTES = 256 * 1024
IDENTITY_HINT = (
    "a GitHub Actions identity is the signing workflow's URL and ref, e.g. "
    "https://github.com/OWNER/REPO/.github/workflows/verifily.yml@refs/heads/main"
)


def message(root_hash: str) -> bytes:
    return PREFIX + root_hash.encode()


def token_available() -> bool:
    """Whether this GitHub Actions job can ask for an OIDC token (`permissions: id-token: write`)."""
    return bool(os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL") and os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))


def _quiet_sigstore() -> None:
    # sigstore and tuf log progress at WARNING ("TUF repository is loaded in offline mode"); the caller reports
    for name in ("sigstore", "tuf", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def sign(run_dir: Path, root_hash: str) -> str:
    """Sign `root_hash` keyless with this job's OIDC identity and write sigstore.json; returns the certificate's
    identity (SAN). Any failure (no token, Sigstore unreachable) is a VerifilyError saying which step failed."""
    _quiet_sigstore()
    try:
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken, detect_credential
        from sigstore.sign import SigningContext
    except ImportError:
        raise VerifilyError(
            "keyless signing needs the `sigstore` package, which is not installed",
            hint="pip install sigstore (the Action's images include it)",
        ) from None
    try:
        raw = detect_credential()
    except Exception as e:  # sigstore.oidc.IdentityError and the HTTP errors under it
        raise VerifilyError(f"keyless signing: no OIDC token from GitHub: {e}") from None
    if not raw:
        raise VerifilyError(
            "keyless signing: this job has no OIDC token",
            hint="give the workflow `permissions: id-token: write` (pull requests from forks never get one)",
        )
    try:
        identity = IdentityToken(raw)
        context = SigningContext.from_trust_config(ClientTrustConfig.production())
        with context.signer(identity, cache=True) as signer:
            bundle = signer.sign_artifact(message(root_hash))
    except Exception as e:  # network, Fulcio or Rekor refusals: the library raises many kinds
        raise VerifilyError(
            f"keyless signing failed at Sigstore: {type(e).__name__}: {e}",
            hint="the runner must reach fulcio.sigstore.dev, rekor.sigstore.dev and tuf-repo-cdn.sigstore.dev",
        ) from None
    write_text_atomic(Path(run_dir) / SIGSTORE_BUNDLE, bundle.to_json())
    return str(identity.identity)


def remove(run_dir: Path) -> None:
    """Delete the bundle before the root it signed changes."""
    path = Path(run_dir) / SIGSTORE_BUNDLE
    if path.is_file() and not path.is_symlink():
        path.unlink()


def _verifier(notes: list[str]):
    from sigstore.errors import TUFError
    from sigstore.verify import Verifier

    if os.environ.get(OFFLINE_ENV) == "1":
        return Verifier.production(offline=True)
    try:
        return Verifier.production()
    except TUFError:
        notes.append(
            "Sigstore's trust root could not be refreshed (no network?): checked against the one shipped with "
            "the installed sigstore package"
        )
        return Verifier.production(offline=True)


def verify_bundle(data: bytes, signed, identities: list[str], issuer: str = GITHUB_ISSUER) -> tuple[str, list[str]]:
    """Verify a Sigstore bundle (JSON bytes) over `signed` (the bytes, or a `sigstore.hashes.Hashed` digest) for a
    certificate naming one of `identities` from `issuer`. Returns (the identity that matched, notes); raises
    VerifilyError saying what failed."""
    _quiet_sigstore()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import policy

    if not identities:
        raise VerifilyError("no trusted identity to check a keyless signature against", hint=IDENTITY_HINT)
    try:
        bundle = Bundle.from_json(data)
    except Exception as e:  # the models raise pydantic, JSON and certificate errors alike
        raise VerifilyError(f"not a Sigstore bundle: {type(e).__name__}: {str(e)[:200]}") from None
    notes: list[str] = []
    verifier = _verifier(notes)
    failures = []
    for ident in identities:
        try:
            verifier.verify_artifact(signed, bundle, policy.Identity(identity=ident, issuer=issuer))
            return ident, notes
        except SigstoreError as e:
            failures.append(str(e))
        except Exception as e:  # malformed certificates surface as cryptography/pyasn1 errors
            failures.append(f"{type(e).__name__}: {e}")
    digest_mismatch = [f for f in failures if "digest mismatch" in f or "invalid for input" in f]
    raise VerifilyError(
        "the Sigstore bundle does not sign this run's root hash"
        if digest_mismatch
        else f"the Sigstore bundle is not from a trusted identity: {failures[0]}"
    )


def check(run_dir: Path, root_hash: str | None, identities: list[str], issuer: str = GITHUB_ISSUER) -> list[Problem]:
    """Problems of the run's keyless signature under `identities` (empty: it verifies). The bundle must be a
    regular file of at most MAX_BUNDLE_BYTES that signs this root."""
    path = Path(run_dir) / SIGSTORE_BUNDLE
    hint = (
        "sign runs keyless in the Action (`permissions: id-token: write`), or trust the identity that signed it "
        f"(--trusted-identity); {IDENTITY_HINT}"
    )
    try:
        st = path.lstat()
    except FileNotFoundError:
        return [Problem(f"the run has no keyless signature ({SIGSTORE_BUNDLE})", file=str(path), hint=hint)]
    if not stat.S_ISREG(st.st_mode):
        return []  # a link or special file: the run-folder scan reports it
    if st.st_size > MAX_BUNDLE_BYTES:
        return [Problem(f"{SIGSTORE_BUNDLE} is {st.st_size:,} bytes, over {MAX_BUNDLE_BYTES:,}", file=str(path))]
    if not isinstance(root_hash, str):
        return [Problem("the run has no root hash to check its keyless signature against", file=str(path))]
    try:
        verify_bundle(path.read_bytes(), message(root_hash), identities, issuer)
    except VerifilyError as e:
        return [Problem(e.message, file=str(path), hint=hint)]
    return []


def signer_identity(run_dir: Path) -> str | None:
    """The SAN of the bundle's certificate, unverified (for display next to a verified check)."""
    path = Path(run_dir) / SIGSTORE_BUNDLE
    try:
        from sigstore.models import Bundle

        cert = Bundle.from_json(path.read_bytes()).signing_certificate
        from cryptography.x509 import SubjectAlternativeName, UniformResourceIdentifier

        san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
        uris = san.get_values_for_type(UniformResourceIdentifier)
        return uris[0] if uris else None
    except Exception:  # absent, unreadable, not a bundle: nothing to show
        return None
