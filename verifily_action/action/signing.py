"""The Action's signing inputs: `signing-key` (this job's runs are signed with it), `keyless-signing` (Sigstore,
with the job's OIDC identity), and `trusted-keys` / `trusted-identities` (a downloaded baseline counts only when its
chain verifies and a trusted key, or a trusted Sigstore identity, signed its root hash)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import VerifilyError
from ..github import workflow as wf
from .inputs import Inputs


def untrusted(folder: Path, trusted: list[str], identities: list[str] | None = None) -> str:
    """Why a downloaded baseline fails the `trusted-keys` / `trusted-identities` inputs (its chain, a signature by a
    trusted key, a Sigstore bundle from a trusted identity); empty when it passes or neither is given."""
    if not trusted and not identities:
        return ""
    from ..runs.signature import trusted_id
    from ..runs.verify import verify_run

    ids = [trusted_id(k, "input trusted-keys:") for k in trusted]
    try:
        report = verify_run(folder, inputs=False, trusted_keys=ids or None, trusted_identities=identities or None)
    except VerifilyError as e:
        return e.message.replace(str(folder), "the baseline folder")
    if report.ok:
        return ""
    first = report.problems[0]
    return first.message.replace(str(folder), "the baseline folder") + (
        f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
    )


def use_signing_key(inputs: Inputs) -> None:
    """The `signing-key` input: written to a private file outside the workspace (never uploaded with the run) and
    named by VERIFILY_SIGNING_KEY, so every seal of this job signs its root hash; a bad key fails here, first."""
    from ..runs.signature import ENV, load_private

    if not inputs.signing_key:
        return
    for line in inputs.signing_key.splitlines():
        if line.strip() and not line.startswith("-----"):
            wf.add_mask(line.strip())
    folder = Path(tempfile.mkdtemp(prefix="verifily-key-"))
    path = folder / "signing_key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(inputs.signing_key.strip() + "\n")
    os.environ[ENV] = str(path)
    load_private(path)


def sign_keyless(run_dir: Path, inputs: Inputs) -> str | None:
    """The `keyless-signing` input: sign the sealed run's root hash with Sigstore (sigstore.json) when the job has
    an OIDC token. `auto`: skipped without a token, a failure is a warning; `true`: both fail the job. Returns the
    signing identity, or None when the run is not signed."""
    from ..runs import keyless
    from ..runs.files import read_json
    from ..runs.layout import RUN_META

    mode = inputs.keyless_signing
    if mode == "false":
        return None
    if mode == "auto" and not keyless.token_available():
        print("not signed keyless: this job has no OIDC token (`permissions: id-token: write`; forks never get one)")
        return None
    root = read_json(Path(run_dir) / RUN_META).get("root_hash")
    try:
        if not keyless.token_available():
            raise VerifilyError(
                "keyless-signing is `true` but this job has no OIDC token",
                hint="give the job `permissions: id-token: write` (pull requests from forks never get one), or set "
                "keyless-signing to `auto`",
            )
        identity = keyless.sign(run_dir, str(root))
    except VerifilyError as e:
        if mode == "true":
            raise
        wf.warning(f"the run is not signed keyless: {e.message}")
        return None
    print(f"signed root {str(root)[:16]} keyless (Sigstore) as {identity}")
    return identity
