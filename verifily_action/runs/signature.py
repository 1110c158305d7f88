"""Anchor a run's hash chain: its root hash signed with a local Ed25519 key (signature.json, `layout.SIGNATURE`).

The chain alone proves consistency: anyone who edits a file can recompute every hash and the root. A signature
proves that the holder of a private key sealed this root; whether that key is one you trust is what
`reproduce --verify-only --trusted-key` decides.

* Keys: `verifily keys init` writes an Ed25519 key pair, `signing_key.pem` (PKCS#8, unencrypted, mode 0600) and
  `signing_key.pub.pem` (SubjectPublicKeyInfo), into `$XDG_CONFIG_HOME/verifily/keys` (else ~/.config/...).
* Signing: when VERIFILY_SIGNING_KEY names the private key, every seal (`chain.seal`: train, eval) signs the new
  root; a seal without a key removes the previous signature, which no longer matches the root.
* The signed message is `PREFIX + root_hash` (ASCII), so a signature made for anything else never passes; the
  file records the raw public key and its id (sha256 of the raw key, hex), so a check needs only a trusted id.
* Checks: a signature.json that is present must be well formed, sign the run's root and verify under the key it
  names (`check`, part of `chain.verify_chain`); `--trusted-key` also requires that key to be trusted.
`cryptography` is imported inside the functions that need it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Problem, VerifilyError
from .files import write_json_atomic
from .layout import SIGNATURE

ENV = "VERIFILY_SIGNING_KEY"
PREFIX = b"verifily-run-root-hash:v1:"
PRIVATE_NAME = "signing_key.pem"
PUBLIC_NAME = "signing_key.pub.pem"
MAX_KEY_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
KEY_ID = re.compile(r"[0-9a-f]{64}")
SIGN_HINT = f"set {ENV} to your private key (`verifily keys init` makes one) and train or evaluate the run again"


def default_key_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "verifily" / "keys"


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


def _raw_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def generate(folder: Path | None = None, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new key pair into `folder` (the default key folder); returns (private, public, key id)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder) if folder else default_key_dir()
    private, public = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    if not force and (private.exists() or public.exists()):
        raise VerifilyError(
            f"a signing key already exists: {private}",
            hint="keep it (runs signed with it stay verifiable), or pass --force to replace it",
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = private.with_name(f".{private.name}.tmp")
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, private)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public.write_bytes(pub)
    return private, public, key_id(_raw_public(key.public_key()))


def _read_small(path: Path, what: str, limit: int) -> bytes:
    try:
        st = path.stat()
    except OSError as e:
        raise VerifilyError(f"{what} {path} cannot be read: {e.strerror}", hint=SIGN_HINT) from None
    if not stat.S_ISREG(st.st_mode):
        raise VerifilyError(f"{what} {path} is not a regular file", hint="give the path of the key file itself")
    if st.st_size > limit:
        raise VerifilyError(f"{what} {path} is {st.st_size:,} bytes; a key file is under {limit:,}")
    return path.read_bytes()


def load_private(path: str | Path) -> Any:
    """The Ed25519 private key in `path` (PEM PKCS#8, unencrypted, not readable by group or others)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    data = _read_small(p, f"the signing key ({ENV})", MAX_KEY_BYTES)
    mode = p.stat().st_mode
    if mode & 0o077:
        raise VerifilyError(
            f"the signing key {p} is readable by other users (mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {p}",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise VerifilyError(
            f"the signing key {p} is not an unencrypted PEM private key: {e}",
            hint="make one with `verifily keys init`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise VerifilyError(f"the signing key {p} is not an Ed25519 key", hint="make one with `verifily keys init`")
    return key


def configured_key() -> Any | None:
    """The private key VERIFILY_SIGNING_KEY names, or None when it is unset (runs are then not signed)."""
    path = os.environ.get(ENV)
    return load_private(path) if path else None


def trusted_id(spec: str, where: str = "--trusted-key") -> str:
    """A trusted key as a key id: a 64-hex key id as it is, a public key in PEM text, or a PEM file, hashed.
    `where` names the option or input it came from, for the error."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = spec.strip()
    if KEY_ID.fullmatch(text.lower()):
        return text.lower()
    hint = "give the public key file (signing_key.pub.pem), its PEM text or its key id (64 hex digits)"
    pem = text.startswith("-----BEGIN")
    shown = "a PEM block" if pem else spec
    data = text.encode() if pem else _read_small(Path(spec), "the trusted key", MAX_KEY_BYTES)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise VerifilyError(f"{where} {shown}: not a PEM public key", hint=hint) from None
    if not isinstance(key, Ed25519PublicKey):
        raise VerifilyError(f"{where} {shown}: not an Ed25519 public key", hint=hint)
    return key_id(_raw_public(key))


def own_trusted_ids() -> list[str]:
    """The id of the key VERIFILY_SIGNING_KEY names (your own runs), or none."""
    key = configured_key()
    return [key_id(_raw_public(key.public_key()))] if key is not None else []


def sign(run_dir: Path, key: Any, root_hash: str) -> dict[str, Any]:
    """Sign `root_hash` and write signature.json; returns the document."""
    raw = _raw_public(key.public_key())
    doc = {
        "schema_version": 1,
        "algorithm": "ed25519",
        "root_hash": root_hash,
        "key_id": key_id(raw),
        "public_key": base64.b64encode(raw).decode(),
        "signature": base64.b64encode(key.sign(PREFIX + root_hash.encode())).decode(),
    }
    write_json_atomic(Path(run_dir) / SIGNATURE, doc)
    return doc


def remove(run_dir: Path) -> None:
    """Delete a signature before the root it signed changes (a stale signature never verifies)."""
    path = Path(run_dir) / SIGNATURE
    if path.is_file() and not path.is_symlink():
        path.unlink()


@dataclass
class Checked:
    """A run's signature as checked: the signing key's id when it verifies, and what is wrong otherwise."""

    key_id: str | None = None
    problems: list[Problem] | None = None


def check(run_dir: Path, root_hash: Any) -> Checked:
    """Check signature.json when the run has one (the caller made sure it is a regular file): well formed, signing
    `root_hash`, valid under the public key it names. No file: `Checked()` (unsigned, no problem)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ..schemas import validator

    path = Path(run_dir) / SIGNATURE
    if not path.is_file():
        return Checked()
    fix = "sign the run again (train or evaluate it with VERIFILY_SIGNING_KEY set), or delete signature.json"

    def bad(message: str, json_path: str | None = None) -> Checked:
        return Checked(problems=[Problem(message, file=str(path), json_path=json_path, hint=fix)])

    if path.stat().st_size > MAX_SIGNATURE_BYTES:
        return bad(f"{SIGNATURE} is larger than {MAX_SIGNATURE_BYTES:,} bytes")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        return bad(f"{SIGNATURE} cannot be read: {e}")
    errors = sorted(validator("signature.schema.json").iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        where = "$" + "".join(f".{p}" for p in errors[0].absolute_path)
        return bad(f"{SIGNATURE} is not a valid signature: {errors[0].message}", where)
    raw = base64.b64decode(doc["public_key"])
    if key_id(raw) != doc["key_id"]:
        return bad(f"{SIGNATURE}: key_id is not the sha256 of public_key", "$.key_id")
    if doc["root_hash"] != root_hash:
        return bad(f"{SIGNATURE} signs root {doc['root_hash'][:16]}…, not this run's root {str(root_hash)[:16]}…")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(doc["signature"]), PREFIX + root_hash.encode())
    except InvalidSignature:
        return bad(f"{SIGNATURE}: the signature does not verify under key {doc['key_id'][:16]}", "$.signature")
    return Checked(key_id=doc["key_id"], problems=[])
