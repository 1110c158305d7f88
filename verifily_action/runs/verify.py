"""`reproduce --verify-only`: recompute a run's whole hash chain from disk and name every file that differs.

Checks, each reported as a Problem naming the file:
  * hashes.json and run_meta.json can be read, hashes.json has its schema (algorithm, entries), the run completed;
  * every entry of hashes.json that names a file in the run folder, `config:canonical` and `run_meta:canonical`
    (verify_chain), and the root hash in run_meta.json;
  * no file in the run folder is missing from hashes.json (a file added after the run was sealed);
  * `entries`' rules: entry names are plain relative paths inside the run or known inputs inside their folder, the
    entries every run records are there, and the folder holds no symbolic link or special file (never opened);
  * signature.json when the run has one (it must sign this root); with `require_signature`, that there is one, made
    with a trusted key (`trusted_keys`: key ids, see `signature`); with `trusted_identities`, a Sigstore bundle
    (sigstore.json, see `keyless`) signing this root for one of them;
  * the inputs outside the run folder when they are at hand: the dataset manifest, its data files and the dataset
    hash (resolved by name@version), and the base model's files (run_meta.json `model_path`). Inputs not found are
    listed as not rechecked; they do not fail the check.
No torch: the check runs wherever the run folder is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from ..hashing import sha256_file
from .chain import verify_chain
from .entries import (
    CONFIG_ENTRY,
    GGUF_SOURCE,
    META_ENTRY,
    MODEL,
    MODEL_GGUF,
    MODEL_NOT_FILES,
    is_file_entry,
    name_problem,
    scan,
)
from .layout import CONFIG, HASHES, RUN_META, SEALS, SIGNATURE, SIGNATURES, SIGSTORE_BUNDLE, is_scratch


@dataclass
class VerifyReport:
    run_dir: Path
    problems: list[Problem] = field(default_factory=list)
    checked: int = 0  # hashes recomputed
    notes: list[str] = field(default_factory=list)  # inputs that could not be rechecked
    root_hash: str | None = None
    signed_by: str | None = None  # the id of the key whose valid signature the run carries
    trusted: bool | None = None  # whether that key is trusted (None: no trusted keys were given)
    keyless_identity: str | None = None  # the trusted identity whose Sigstore bundle signs this root (checked)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "ok": self.ok,
            "checked": self.checked,
            "root_hash": self.root_hash,
            "signature": {"key_id": self.signed_by, "trusted": self.trusted} if self.signed_by else None,
            "keyless": {"identity": self.keyless_identity} if self.keyless_identity else None,
            "problems": [p.to_dict() for p in self.problems],
            "notes": self.notes,
        }


def _load(path: Path, report: VerifyReport) -> Any:
    if not path.is_file():
        report.problems.append(Problem(f"{path.name} is missing", file=str(path)))
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        report.problems.append(Problem(f"{path.name} cannot be read: {e}", file=str(path)))
        return None


def _check_hashes_doc(doc: Any, path: Path, report: VerifyReport) -> dict[str, str] | None:
    from ..schemas import validator

    errors = sorted(validator("hashes.schema.json").iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        report.problems.append(Problem(f"{HASHES} is not a valid hash chain at {where}: {e.message}", file=str(path)))
    if errors:
        return None
    return dict(doc["entries"])


def _unrecorded(run_dir: Path, entries: dict[str, str]) -> list[Problem]:
    out = []
    for f in sorted(p for p in run_dir.rglob("*") if p.is_file() or p.is_symlink()):
        rel = f.relative_to(run_dir).as_posix()
        if rel in SEALS or rel in entries or (f.is_file() and not f.is_symlink() and is_scratch(rel)):
            continue  # a scratch file (layout.is_scratch: an atomic write's temporary file) is not a run file
        out.append(Problem(f"{rel} is not in {HASHES}: it was added after the run was sealed", file=str(f)))
    return out


def _check_datasets(run_dir: Path, entries: dict[str, str], root: str | Path | None, report: VerifyReport) -> None:
    from ..datasets.manifest import safe_path
    from ..datasets.registry import recorded_root, resolve_first, search_roots

    refs = sorted({name[len("dataset:") :].split("/")[0] for name in entries if name.startswith("dataset:")})
    roots = search_roots(root, recorded_root(run_dir / CONFIG))
    for ref in refs:
        try:
            manifest = resolve_first(ref, roots)
        except VerifilyError:
            manifest = None
        prefix = f"dataset:{ref}"
        recorded = {k: v for k, v in entries.items() if k == prefix or k.startswith(prefix + "/")}
        if manifest is None:
            report.notes.append(
                f"dataset {ref} not found (give --datasets-root): {len(recorded)} hash(es) not rechecked"
            )
            continue
        for name, want in sorted(recorded.items()):
            rel = name[len(prefix) + 1 :]
            if name == prefix:
                got, file = manifest.dataset_hash(), manifest.path
            elif rel == "manifest":
                got, file = sha256_file(manifest.path), manifest.path
            else:
                file = manifest.dir / rel
                try:
                    safe_path(manifest, rel)  # a link in the dataset folder may not lead out of it either
                except VerifilyError as e:
                    report.problems.append(Problem(f"{name}: {e.message}", file=str(file)))
                    continue
                if not file.is_file():
                    report.problems.append(Problem(f"{name}: the data file is missing", file=str(file)))
                    continue
                got = sha256_file(file)
            report.checked += 1
            if got != want:
                report.problems.append(
                    Problem(f"{name} changed: sha256 {got} but {HASHES} records {want}", file=str(file))
                )


def _check_model(meta: dict[str, Any], entries: dict[str, str], report: VerifyReport) -> None:
    files = {k[len(MODEL) :]: v for k, v in entries.items() if k.startswith(MODEL) and k not in MODEL_NOT_FILES}
    if not files:
        return
    folder = Path(str(meta.get("model_path") or ""))
    if not meta.get("model_path") or not folder.is_dir():
        report.notes.append(f"base model folder not found: {len(files)} model hash(es) not rechecked")
        return
    if MODEL_GGUF in entries:  # the folder converted from a GGUF names its source's hash (train/gguf.py)
        source = folder / GGUF_SOURCE
        try:
            got_gguf = json.loads(source.read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError, AttributeError):
            got_gguf = None
        report.checked += 1
        if got_gguf != entries[MODEL_GGUF]:
            report.problems.append(
                Problem(
                    f"{MODEL_GGUF}: the model folder was not converted from the GGUF {HASHES} records "
                    f"({entries[MODEL_GGUF][:16]}…)",
                    file=str(source),
                )  # fmt: skip
            )
    for rel, want in sorted(files.items()):
        f = folder / rel
        if not f.is_file():
            report.problems.append(Problem(f"model:{rel}: the base model file is missing", file=str(f)))
            continue
        report.checked += 1
        got = sha256_file(f)
        if got != want:
            report.problems.append(
                Problem(f"model:{rel} changed: sha256 {got} but {HASHES} records {want}", file=str(f))
            )


def _signature(d: Path, meta: dict[str, Any], trusted_keys: list[str] | None, report: VerifyReport) -> None:
    """Who signed the run (its signature's problems are verify_chain's); with `trusted_keys`, require a trusted one."""
    from .signature import SIGN_HINT, check

    report.signed_by = check(d, meta.get("root_hash")).key_id
    if trusted_keys is None:
        return
    path = d / SIGNATURE
    if not path.exists():
        report.problems.append(Problem(f"the run is not signed (no {SIGNATURE})", file=str(path), hint=SIGN_HINT))
    elif report.signed_by is not None:
        report.trusted = report.signed_by in trusted_keys
        if not report.trusted:
            report.problems.append(
                Problem(
                    f"the run is signed by key {report.signed_by}, which is not a trusted key",
                    file=str(path),
                    hint="if you trust that key, pass its public key file or id with --trusted-key",
                )
            )


def _keyless(d: Path, meta: dict[str, Any], identities: list[str], issuer: str | None, report: VerifyReport) -> None:
    from . import keyless

    problems = keyless.check(d, meta.get("root_hash"), identities, issuer or keyless.GITHUB_ISSUER)
    report.problems.extend(problems)
    if not problems:
        report.keyless_identity = keyless.signer_identity(d)


def verify_run(
    run_dir: str | Path,
    datasets_root: str | Path | None = None,
    inputs: bool = True,
    trusted_keys: list[str] | None = None,
    trusted_identities: list[str] | None = None,
    oidc_issuer: str | None = None,
) -> VerifyReport:
    """Recompute every hash of a run's chain; the report lists each difference by file (empty: intact).
    `trusted_keys` (key ids): also require a valid signature by one of them. `trusted_identities` (certificate
    identities, `keyless`): also require a Sigstore bundle signing the root for one of them from `oidc_issuer`
    (GitHub Actions' by default)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise VerifilyError(f"{d} is not a folder", hint="give the folder of a run written by `verifily train`")
    if not (d / RUN_META).exists() and not (d / HASHES).exists():
        raise VerifilyError(
            f"{d} is not a run folder (neither {RUN_META} nor {HASHES} is there)",
            hint="give the folder of a run written by `verifily train` (e.g. runs/<name>/)",
        )
    report = VerifyReport(d.resolve())
    found = scan(d)  # links and special files: reported, and never opened below
    report.problems.extend(found.unsafe.values())
    if HASHES in found.unsafe or RUN_META in found.unsafe:
        return report
    meta = _load(d / RUN_META, report)
    doc = _load(d / HASHES, report)
    entries = _check_hashes_doc(doc, d / HASHES, report) if doc is not None else None
    if isinstance(meta, dict):
        report.root_hash = meta.get("root_hash")
        if meta.get("status") != "completed":
            report.problems.append(
                Problem(
                    f"status is {meta.get('status')!r}, not completed: the chain was never sealed",
                    file=str(d / RUN_META),
                )
            )
    elif meta is not None:
        report.problems.append(Problem(f"{RUN_META} is not a JSON object", file=str(d / RUN_META)))
    if entries is None:
        return report
    if isinstance(meta, dict):
        # Both files read: recompute every in-folder hash and the root (verify_chain is the one definition).
        chain = verify_chain(d, found)
        if SIGNATURE not in found.unsafe:
            _signature(d, meta, trusted_keys, report)
        if trusted_identities and SIGSTORE_BUNDLE not in found.unsafe:
            _keyless(d, meta, trusted_identities, oidc_issuer, report)
        report.problems.extend(chain)
        if any("root_hash" in p.message for p in chain):
            # Which of the two sealed files was edited cannot be told apart: name hashes.json too.
            report.problems.append(
                Problem(
                    f"the entries of {HASHES} do not hash to the root sealed in {RUN_META}: one of them was edited",
                    file=str(d / HASHES),
                )
            )
    entries = {k: v for k, v in entries.items() if not name_problem(k)}  # refused names are never followed
    report.checked += sum(
        1 for k in entries if (is_file_entry(k) and not found.blocked(k)) or k in (CONFIG_ENTRY, META_ENTRY)
    )
    unrecorded = _unrecorded(d, entries)
    rels = [Path(str(p.file)).relative_to(d).as_posix() for p in unrecorded]
    # signature.json and sigstore.json are outside the chain they sign; links and special files were reported
    report.problems.extend(
        p for p, rel in zip(unrecorded, rels, strict=True) if rel not in SIGNATURES and not found.blocked(rel)
    )
    if inputs:
        _check_datasets(d, entries, datasets_root, report)
        _check_model(meta if isinstance(meta, dict) else {}, entries, report)
    return report
