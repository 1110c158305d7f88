"""The Action's two signing inputs: `signing-key` (this job's runs are signed with it) and `trusted-keys` (a downloaded
baseline counts only when its chain verifies and a trusted key signed its root hash)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import VerifilyError
from ..github import workflow as wf
from .inputs import Inputs


def untrusted(folder: Path, trusted: list[str]) -> str:
    """Why a downloaded baseline fails the `trusted-keys` input (its chain, or a signature by a trusted key); empty
    when it passes or no key is given."""
    if not trusted:
        return ""
    from ..runs.signature import trusted_id
    from ..runs.verify import verify_run

    ids = [trusted_id(k, "input trusted-keys:") for k in trusted]
    try:
        report = verify_run(folder, inputs=False, trusted_keys=ids)
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
