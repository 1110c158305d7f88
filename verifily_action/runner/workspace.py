"""A job's folder on the runner, `<work-dir>/<job id>-a<attempt>/`, made ready for `train`:

    datasets/<name>/<version>/   every dataset version the job names, fetched by hash through the lease and checked
    train.yaml                   the submitted config, its datasets_root and output_dir pointing here, no server:
                                 and no cache_dir (those name the submitter's machine)
    runs/<run>.partial/          a resumed attempt: the last uploaded checkpoint unpacked, its config.yaml's folders
                                 rewritten from the old runner's to these
    train.log, out.txt           the child's stderr (sent with the heartbeats) and stdout (the run folder)

One runner per work dir (`claim`: a lock, and the folders a killed runner left there removed at start-up).
`prepare` returns the `verifily` arguments that train the job: `train --config train.yaml`, or `train --resume
runs/<run>.partial`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import VerifilyError
from ..runs.files import read_json
from ..runs.layout import CONFIG
from ..yamlsource import load_yaml
from . import snapshot
from .lease_client import Lease

DATASETS = "datasets"
RUNS = "runs"
CONFIG_FILE = "train.yaml"
SUBMITTED = "submitted.yaml"  # the config text as the server sent it
LOG = "train.log"
OUT = "out.txt"
CHECKPOINT_ARCHIVE = "checkpoint.tar.gz"
LOCK = ".runner.lock"
JOB_FOLDER = re.compile(r"job_[0-9a-f]{16}-a[0-9]+")  # folder_for's names: the only folders `claim` removes
DROPPED_KEYS = ("server", "cache_dir")  # the submitter's server and run cache: datasets come through the lease


def claim(work_dir: Path) -> int:
    """Hold `work_dir` for this runner — an flock on its .runner.lock, released when the process ends however it
    ends — then remove the job folders a runner killed there left behind. A second runner on the same folder gets one
    clear error. Returns the lock's descriptor (kept open for the runner's life)."""
    import fcntl
    import socket

    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip()
        os.close(fd)
        raise VerifilyError(
            f"--work-dir {work_dir} is in use by another runner ({holder or 'its pid unknown'})",
            hint="give each runner its own --work-dir",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    for p in work_dir.iterdir():
        if p.is_dir() and JOB_FOLDER.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)
    return fd


def folder_for(work_dir: Path, job: dict[str, Any]) -> Path:
    from ..server.names import check_name

    return work_dir / f"{check_name(job['id'], 'job id')}-a{int(job['attempt'])}"


def prepare(lease: Lease, job: dict[str, Any], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for d in job["datasets"]:
        fetch_dataset(lease, d, folder / DATASETS)
    checkpoint = job.get("checkpoint")
    if checkpoint:
        archive = folder / CHECKPOINT_ARCHIVE
        lease.fetch_blob(checkpoint["sha256"], archive)
        partial = snapshot.unpack(archive, folder / RUNS)
        archive.unlink()
        rewrite_paths(partial, folder)
        return ["train", "--resume", str(partial)]
    return ["train", "--config", str(write_config(job["config"], folder))]


def fetch_dataset(lease: Lease, d: dict[str, Any], root: Path) -> Path:
    """`root`/<name>/<version>/ from the version's manifest and its files, each checked (remote/pull.py)."""
    from ..remote.pull import download
    from ..server.names import check_name

    name, _, version = str(d["ref"]).partition("@")
    dest = root / check_name(name, "dataset") / check_name(version, "version")
    if dest.is_dir():  # the job names it twice (dataset and eval_dataset)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetching-", dir=dest.parent))
    try:
        download(lease.client, {"manifest": d["manifest"], "dataset_hash": d["hash"]}, tmp, lease.prefix)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def write_config(text: str, folder: Path) -> Path:
    """`folder`/train.yaml: the submitted config with this folder's datasets and runs."""
    submitted = folder / SUBMITTED
    submitted.write_text(text, encoding="utf-8")
    data = load_yaml(submitted, "job config")
    if not isinstance(data, dict):
        raise VerifilyError(f"{submitted}: the job's config is not a mapping")
    for key in DROPPED_KEYS:
        data.pop(key, None)
    data["datasets_root"] = str((folder / DATASETS).resolve())
    data["output_dir"] = str((folder / RUNS).resolve())
    out = folder / CONFIG_FILE
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def rewrite_paths(partial: Path, folder: Path) -> None:
    """A resumed run names the old runner's folders: its recorded config's datasets_root and output_dir become this
    job folder's (the run's hash chain is computed when it is sealed, from the config as it is then), and a base
    model path that does not exist here (another cache folder, another GGUF conversion) is resolved here again from
    the config's `model` (train hashes the model it loads; a resume does not compare that hash with the first
    attempt's — a fleet must hold the same weights under one name)."""
    from ..runs.folder import update_meta
    from ..runs.layout import RUN_META
    from ..train.models import resolve_model

    config = partial / CONFIG
    data = load_yaml(config, "run config")
    data["datasets_root"] = str((folder / DATASETS).resolve())
    data["output_dir"] = str((folder / RUNS).resolve())
    for key in DROPPED_KEYS:
        if key in data:
            data[key] = None
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    recorded = read_json(partial / RUN_META).get("model_path")
    if recorded and not Path(recorded).exists():
        try:
            here = resolve_model(str(data["model"]))
        except VerifilyError:
            return  # train says so, with its hint (exit 2: the job fails where its model is missing)
        update_meta(partial, model_path=str(here.path))
