"""Where a server's URL and token come from: arguments, else VERIFILY_SERVER / VERIFILY_TOKEN, else the file
`verifily login` wrote ($XDG_CONFIG_HOME/verifily/credentials.json, mode 0600: {"default": URL, "tokens": {URL: T}})."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..datasets.registry import ENV_SERVER
from ..errors import VerifilyError

ENV_TOKEN = "VERIFILY_TOKEN"


def credentials_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "verifily" / "credentials.json"


def _read() -> dict:
    p = credentials_file()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VerifilyError(
            f"{p}: cannot read the saved credentials ({e})", hint="run `verifily login URL` again"
        ) from None
    return data if isinstance(data, dict) else {}


def normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise VerifilyError(f"server URL {url!r} must start with http:// or https://")
    return url


def save(url: str, token: str) -> Path:
    """Store the token for `url` (and make it the default server) in a file only its owner can read."""
    p = credentials_file()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = _read()
    data.setdefault("tokens", {})[url] = token
    data["default"] = url
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)  # also when the file was there before with a wider mode
    os.replace(tmp, p)
    return p


def server_url(given: str | None = None) -> str:
    url = given or os.environ.get(ENV_SERVER) or _read().get("default")
    if not url:
        raise VerifilyError(
            "no server given", hint=f"pass the server URL, set {ENV_SERVER}, or run `verifily login URL` once"
        )
    return normalize(url)


def token_for(url: str) -> str:
    token = os.environ.get(ENV_TOKEN) or _read().get("tokens", {}).get(url)
    if not token:
        raise VerifilyError(f"no token for {url}", hint=f"run `verifily login {url}` or set {ENV_TOKEN}")
    return token
