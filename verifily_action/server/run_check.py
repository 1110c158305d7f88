"""What the server checks before it records a run: every path stays inside the run folder, every file was uploaded
by this organization, and the run's hash chain holds — the folder is rebuilt from the store in a temporary folder
and `runs.verify.verify_run` recomputes every in-folder hash and the root (the inputs, dataset and base model, are
not on the server; their recorded hashes are part of the root it checks). A tampered run is refused, and nothing is
recorded."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import Problem, VerifilyError
from .blobs import BlobStore
from .names import check_rel_path, check_sha256


def check_run(files: dict[str, str], root_hash: str, store: BlobStore, held: set[str], scratch: Path) -> str:
    """Rebuild and verify; returns the run's id (run_meta.json's `id`)."""
    from ..runs.files import read_json
    from ..runs.layout import RUN_META
    from ..runs.verify import verify_run

    problems = []
    for path, sha in files.items():
        check_rel_path(path)
        check_sha256(sha)
        if sha not in held or store.local_path(sha) is None:
            problems.append(Problem(f"{path}: no uploaded file with sha256 {sha}"))
    if problems:
        raise VerifilyError("the run was not recorded: files are missing", problems=problems)
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    try:
        for path, sha in files.items():
            target = tmp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            src = store.local_path(sha)
            assert src is not None
            shutil.copyfile(src, target)
        report = verify_run(tmp, inputs=False)
        if not report.ok:
            raise VerifilyError(
                "the run's hash chain does not hold: refused, nothing recorded",
                hint="push the run folder exactly as `verifily train` sealed it",
                problems=[Problem(p.message.replace(str(tmp) + "/", "")) for p in report.problems],
            )
        if report.root_hash != root_hash:
            raise VerifilyError(f"the run's root hash is {report.root_hash}, not {root_hash}")
        meta = read_json(tmp / RUN_META)
        return str(meta.get("id") or root_hash)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
