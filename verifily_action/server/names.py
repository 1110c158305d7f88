"""What a name may be: organizations, datasets, versions and hashes. One rule for the server and the client, so a
name with `../`, a slash, NUL or a leading dot never reaches a path or a query."""

from __future__ import annotations

import re

from ..errors import VerifilyError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SCOPES = ("read", "write", "admin")  # ordered: each may do what the ones before it may
RUNNER_SCOPE = "runner"  # outside that order: the job queue's runner routes and nothing else
TOKEN_SCOPES = (*SCOPES, RUNNER_SCOPE)
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not NAME.match(value) or ".." in value:
        raise VerifilyError(
            f"{what} {value!r} is not a valid name",
            hint="use letters, digits, '.', '_' and '-' (starting with a letter or digit; no '..', '/' or NUL)",
        )
    return value


def check_org(value: str) -> str:
    if not isinstance(value, str) or not ORG.match(value):
        raise VerifilyError(
            f"organization {value!r} is not a valid name",
            hint="use letters, digits, '_' and '-' (at most 64, starting with a letter or digit)",
        )
    return value


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not SHA256.match(value):
        raise VerifilyError(f"{value!r} is not a sha256 (64 lowercase hex digits)")
    return value


def check_scope(value: str) -> str:
    if value not in TOKEN_SCOPES:
        raise VerifilyError(f"scope {value!r} is not one of {', '.join(TOKEN_SCOPES)}")
    return value


def check_labels(values: object) -> list[str]:
    """A job's or a runner's labels: sorted, without repeats, each a short name (`gpu`, `h100`, `a10g-24gb`)."""
    if not isinstance(values, list) or not all(isinstance(v, str) and LABEL.match(v) for v in values):
        raise VerifilyError(
            f"labels {values!r} are not a list of label names",
            hint="each label: letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)",
        )
    return sorted(set(values))


def has_nul(value: object) -> bool:
    """Whether a JSON value holds a NUL character in any string, key or value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def check_rel_path(value: str) -> str:
    """A file's path inside a run folder: relative, forward slashes, no empty, `.` or `..` part, no NUL."""
    parts = value.split("/") if isinstance(value, str) else [""]
    if (
        not value
        or "\x00" in value
        or "\\" in value
        or value.startswith("/")
        or (len(value) > 1 and value[1] == ":")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise VerifilyError(
            f"path {value!r} is not a relative path inside the run folder", hint="no '..', no leading '/', no NUL"
        )
    return value
