"""What a hash chain may hold, what it must hold, and what a run folder may hold: the rules `chain.verify_chain`
(and with it `reproduce --verify-only` and the run cache) applies before it trusts a single entry.

* An entry names a file of the run by a plain relative path (`adapter/adapter_model.safetensors`): forward slashes,
  no empty, `.` or `..` part, not absolute, no backslash or control character, so no entry reads outside the run.
  Every other entry is one of the known kinds (`config:canonical`, `run_meta:canonical`, `dataset:<name>@<version>`
  with `/manifest` or a data file's path inside the dataset folder, `model:<file>`, `model:revision`).
* Every completed run records the same core (`required`): config.yaml, environment.json and the adapter weights,
  `config:canonical`, `run_meta:canonical`, `dataset:<ref>` and `dataset:<ref>/manifest` for the dataset (and the
  separate eval dataset) run_meta.json names, and at least one `model:<file>`. A chain without them proves nothing
  about the data or the base model.
* A run folder holds only regular files and folders (`scan`): a symbolic link could point out of the run or onto
  another file, and a FIFO or device never finishes reading.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem
from .layout import ADAPTER_WEIGHTS, CONFIG, ENVIRONMENT, HASHES, RUN_META, SEALS, SIGNATURES

CONFIG_ENTRY = "config:canonical"
META_ENTRY = "run_meta:canonical"  # run_meta.json's own fields (all but root_hash) are part of the chain too
DATASET = "dataset:"
MODEL = "model:"
MODEL_REVISION = "model:revision"
MODEL_GGUF = "model:gguf"  # the sha256 of the GGUF file the base model folder was converted from (train/gguf.py)
MODEL_NOT_FILES = (MODEL_REVISION, MODEL_GGUF)  # model entries that name no file of the model folder
GGUF_SOURCE = "gguf.json"  # in a folder converted from a GGUF: its name, sha256 and the converter's version
# A dataset reference as `Manifest.ref` writes it (name and version as schemas/dataset.schema.json allows them).
REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}@[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FIX = "the chain was edited or damaged: train the run again (or restore the run folder from a trusted copy)"


def path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path inside a folder; None when it is one."""
    if not path:
        return "is empty"
    if "\\" in path:
        return "has a backslash (paths in the chain use /)"
    if _CONTROL.search(path):
        return "has a control character"
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def _data_path_problem(path: str) -> str | None:
    """A dataset file's path as the manifest gives it (`datasets.manifest.safe_path`'s rule: relative, staying inside
    the dataset folder); the data file itself is checked against the manifest folder when it is rechecked."""
    if not path or _CONTROL.search(path):
        return "is empty or has a control character"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        return "is an absolute path"
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        return "leaves the dataset folder"
    return None


def name_problem(name: str) -> str | None:
    """Why an entry name is not allowed in a chain; None when it is a file path or a known input."""
    if name in (CONFIG_ENTRY, META_ENTRY, *MODEL_NOT_FILES):
        return None
    if name.startswith(DATASET):
        ref, _, sub = name[len(DATASET) :].partition("/")
        if not REF.fullmatch(ref):
            return f"does not name a dataset as {DATASET}<name>@<version>"
        why = _data_path_problem(sub) if sub and sub != "manifest" else None
        return f"names a data file whose path {why}" if why else None
    if name.startswith(MODEL):
        file = name[len(MODEL) :]
        why = path_problem(file) or ("is not a file name" if "/" in file else None)
        return f"names a base model file whose name {why}" if why else None
    if ":" in name:
        return "is neither a file of the run nor a known input (config:, run_meta:, dataset:, model:)"
    if name in (*SEALS, *SIGNATURES):
        return "names a file that holds the chain or its signature, which the chain cannot contain"
    why = path_problem(name)
    return f"{why}: a file of the run is named by a plain relative path inside the run folder" if why else None


def is_file_entry(name: str) -> bool:
    return ":" not in name


def _where(name: str) -> str:
    return f"$.entries[{json.dumps(name)}]"


def entry_problems(entries: dict[str, str], hashes: Path) -> list[Problem]:
    """One Problem per entry name the chain may not hold (file: hashes.json, JSON path of the entry)."""
    out = []
    for name in sorted(entries):
        why = name_problem(name)
        if why:
            out.append(Problem(f"entry {name!r} {why}", file=str(hashes), json_path=_where(name), hint=FIX))
    return out


def required(meta: dict[str, Any]) -> tuple[list[str], list[Problem]]:
    """The entries every completed run records, from what its run_meta.json names; and the problems of a
    run_meta.json that does not say which dataset the run was trained on."""
    names = [CONFIG, ENVIRONMENT, ADAPTER_WEIGHTS, CONFIG_ENTRY, META_ENTRY]
    problems = []
    for key in ("dataset", "eval_dataset"):
        ds = meta.get(key)
        if ds is None and key == "eval_dataset":
            continue
        ref = ds.get("ref") if isinstance(ds, dict) else None
        if not isinstance(ref, str) or not REF.fullmatch(ref):
            problems.append(
                Problem(f"{RUN_META} does not name the {key.replace('_', ' ')} as name@version", json_path=f"$.{key}")
            )
            continue
        names += [f"{DATASET}{ref}", f"{DATASET}{ref}/manifest"]
    return list(dict.fromkeys(names)), problems


def missing_problems(entries: dict[str, str], meta: dict[str, Any], run_dir: Path) -> list[Problem]:
    """One Problem per required entry the chain lacks (file: hashes.json)."""
    names, problems = required(meta)
    for p in problems:
        p.file = str(run_dir / RUN_META)
    hashes = str(run_dir / HASHES)
    for name in names:
        if name not in entries:
            problems.append(Problem(f"{HASHES} has no entry {name!r}, which every run records", file=hashes, hint=FIX))
    if not any(n.startswith(MODEL) and n not in MODEL_NOT_FILES for n in entries):
        problems.append(
            Problem(f"{HASHES} has no entry for the base model's files ({MODEL}<file>)", file=hashes, hint=FIX)
        )
    return problems


@dataclass
class Scan:
    """A run folder walked without following links: its regular files, and every path that is not allowed there."""

    files: list[str] = field(default_factory=list)  # relative posix paths
    unsafe: dict[str, Problem] = field(default_factory=dict)

    def blocked(self, rel: str) -> bool:
        """Whether `rel` or one of its folders is a link or special file (so it must not be opened)."""
        parts = rel.split("/")
        return any("/".join(parts[:i]) in self.unsafe for i in range(1, len(parts) + 1))


def scan(run_dir: Path) -> Scan:
    """Walk the run folder without following symbolic links: regular files are listed; a link (in place of a run
    file or an extra one) or a FIFO, socket or device is a Problem naming it."""
    out = Scan()
    stack = [Path(run_dir)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as err:
            rel = folder.relative_to(run_dir).as_posix()
            out.unsafe[rel] = Problem(f"cannot list the folder {rel}: {err.strerror}", file=str(folder))
            continue
        for e in items:
            rel = Path(e.path).relative_to(run_dir).as_posix()
            if e.is_symlink():
                target = os.readlink(e.path)
                out.unsafe[rel] = Problem(
                    f"{rel} is a symbolic link (to {target}): a run folder holds only regular files and folders",
                    file=e.path,
                    hint="a link can point out of the run or onto another file; put the file itself there, or "
                    "train the run again",
                )
            elif e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif e.is_file(follow_symlinks=False):
                out.files.append(rel)
            else:
                out.unsafe[rel] = Problem(
                    f"{rel} is not a regular file (a FIFO, socket or device): a run folder holds only regular files",
                    file=e.path,
                    hint="remove it; reading it could block forever",
                )
    out.files.sort()
    return out
