"""`verifily push --run RUN` and `verifily pull MODEL@REF`: a sealed run folder to the server's run store (its
files by content hash, as `dataset push` sends them; the server recomputes the chain and refuses a tampered run),
and back: fetched into a temporary folder, its chain verified here too, then renamed into place (`fetch_files`, which
`pull` by model version and `submit --wait` by a job's root hash share)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..hashing import sha256_file
from ..server.settings import CHUNK_BYTES
from .client import API, Client
from .push import upload


@dataclass
class RunPush:
    root_hash: str
    run_id: str
    created: bool
    uploaded: int
    skipped: int
    version: str | None
    stage: str | None


def push_run(run_dir: Path, client: Client, tag: str | None = None, stage: str | None = None) -> RunPush:
    model, version = _split(tag) if tag else (None, None)
    if stage and not tag:
        raise VerifilyError("--stage needs --tag MODEL@VERSION (a stage points at a version)")
    root_hash, files, sent = send_run_files(run_dir, client)
    body = {"files": files, "model": model, "version": version, "stage": stage}
    got = client.call("PUT", f"/api/v1/runs/{root_hash}", json=body)
    return RunPush(
        root_hash,
        got["run_id"],
        bool(got["created"]),
        sent,
        len(set(files.values())) - sent,
        got.get("version"),
        got.get("stage"),
    )


def send_run_files(run_dir: Path, client: Client, prefix: str = API) -> tuple[str, dict[str, str], int]:
    """Verify the run here, then send the files the server lacks through `prefix` (a runner: its lease's routes);
    (root hash, {path: sha256}, files sent). The caller records the run (PUT runs, or a lease's finish)."""
    from ..runs.entries import scan
    from ..runs.verify import verify_run

    report = verify_run(run_dir, inputs=False)  # refuse here what the server would refuse, with the same reasons
    if not report.ok or not report.root_hash:
        raise VerifilyError(
            f"{run_dir}: the run's hash chain does not hold; not pushed",
            hint="`verifily reproduce --verify-only RUN` lists what changed",
            problems=report.problems,
        )
    files = {rel: sha256_file(run_dir / rel) for rel in scan(run_dir).files}
    missing = client.call("POST", f"{prefix}/blobs/missing", json={"hashes": sorted(set(files.values()))})["missing"]
    by_hash = {sha: run_dir / rel for rel, sha in files.items()}
    for sha in missing:
        upload(client, sha, by_hash[sha], CHUNK_BYTES, None, prefix)
    return report.root_hash, files, len(missing)


def _split(ref: str) -> tuple[str, str]:
    from ..server.names import check_name

    name, at, version = ref.partition("@")
    if not at:
        raise VerifilyError(f"{ref!r} is not MODEL@VERSION", hint="e.g. --tag sentiment@v3")
    return check_name(name, "model"), check_name(version, "version")


def pull_model(client: Client, ref: str, out: Path | None) -> tuple[Path, dict[str, Any]]:
    """Fetch `model@version` or `model@stage` into `out` (default ./runs/<run id>); returns (folder, info)."""
    from ..server.names import check_name

    model, version = _split(ref)
    info = client.call("GET", f"/api/v1/models/{model}/{version}")
    dest = out or Path("runs") / check_name(info["run_id"], "run id")
    if dest.exists():
        raise VerifilyError(f"{dest} exists", hint="pass --out with a new folder, or move that one away")
    fetch_files(client, info, dest, ref)
    return dest, info


def fetch_run(client: Client, root_hash: str, out_dir: Path) -> tuple[Path, bool]:
    """The run with root hash `root_hash` from the server's run store, into `out_dir`/<run id>; returns (folder,
    fetched). A folder already there holding that same verified run is kept as it is (fetched False); one holding
    anything else is refused, never overwritten."""
    from ..runs.verify import verify_run
    from ..server.names import check_name, check_sha256

    info = client.call("GET", f"/api/v1/runs/{check_sha256(root_hash)}")
    dest = out_dir / check_name(info["run_id"], "run id")
    if dest.exists():
        report = verify_run(dest, inputs=False)
        if report.ok and report.root_hash == root_hash:
            return dest, False
        raise VerifilyError(
            f"{dest} exists and is not the run {root_hash}",
            hint="move that folder away, then `verifily jobs show JOB` gives the run's root hash to fetch again",
        )
    fetch_files(client, info, dest, f"run {root_hash}")
    return dest, True


def fetch_files(client: Client, info: dict[str, Any], dest: Path, what: str) -> None:
    """Download a run's files (`info`: the server's {"root_hash", "files": {path: sha256}}) into a temporary folder
    next to `dest`, verify its hash chain and root hash here, and only then rename it to `dest`."""
    from ..runs.verify import verify_run
    from ..server.names import check_rel_path

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pulling-", dir=dest.parent))
    try:
        for rel, sha in info["files"].items():
            target = tmp / check_rel_path(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            r = client.call("GET", f"/api/v1/blobs/{sha}", stream=True)
            with open(target, "wb") as f:
                for block in r.iter_content(1024 * 1024):
                    f.write(block)
        report = verify_run(tmp, inputs=False)
        if not report.ok or report.root_hash != info["root_hash"]:
            raise VerifilyError(
                f"{what}: the fetched run does not verify (root {report.root_hash}, expected {info['root_hash']})",
                problems=report.problems,
            )
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
