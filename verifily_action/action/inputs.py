"""The Action's inputs: read and validated from the environment the runner passes (`INPUT_<NAME>`, upper-cased,
hyphens kept). DEFAULTS are action.yml's `default:` values (a test holds them equal); the runner fills those in
before the container starts, and these apply when the Action is run in some other way (tests, `docker run`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import VerifilyError
from ..tags import comma_list

# action.yml's defaults; `github-token` defaults to `${{ github.token }}` there, which only the runner can fill in
DEFAULTS: dict[str, str] = {
    "config": "train.yaml",
    "dataset": "",
    "slice-by": "",
    "baseline": "auto",
    "artifact-name": "verifily-run",
    "comment": "true",
    "comment-author": "",
    "fail-on": "",
    "mode": "train-eval",
    "working-directory": ".",
    "signing-key": "",
    "trusted-keys": "",
    "keyless-signing": "auto",
    "trusted-identities": "",
}
KEYLESS = ("auto", "true", "false")
MODES = ("train-eval", "comment")


@dataclass
class Inputs:
    """The inputs, typed (defaults: DEFAULTS)."""

    config: str = DEFAULTS["config"]
    dataset: str | None = None
    slice_by: list[str] = field(default_factory=list)
    token: str = ""
    baseline: str = DEFAULTS["baseline"]
    artifact_name: str = DEFAULTS["artifact-name"]
    comment: bool = DEFAULTS["comment"] == "true"
    comment_author: str | None = None  # whose comments are ours when GraphQL cannot say (`<app-slug>[bot]`)
    fail_on: str | None = None
    mode: str = DEFAULTS["mode"]
    working_directory: str = DEFAULTS["working-directory"]
    signing_key: str = ""  # PEM text of an Ed25519 private key (a secret): the run's root hash is signed with it
    trusted_keys: list[str] = field(
        default_factory=list
    )  # public keys (PEM text) or key ids a baseline must be signed by
    keyless_signing: str = DEFAULTS["keyless-signing"]  # Sigstore keyless: auto (when the job has an OIDC token)
    trusted_identities: list[str] = field(default_factory=list)  # a baseline's Sigstore signer must be one of them


def read_inputs(env: Mapping[str, str]) -> Inputs:
    """Every input from `env`; one VerifilyError listing each invalid one."""

    def get(name: str) -> str:
        return env.get(f"INPUT_{name.upper()}", "").strip() or DEFAULTS[name]

    problems = []
    mode = get("mode")
    if mode not in MODES:
        problems.append(f"input `mode` must be `train-eval` or `comment`, not {mode!r}")
    comment = get("comment").lower()
    if comment not in ("true", "false"):
        problems.append(f"input `comment` must be `true` or `false`, not {comment!r}")
    author = get("comment-author")
    if author and not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\[bot\])?", author):
        problems.append(f"input `comment-author` must be a GitHub login such as `my-app[bot]`, not {author!r}")
    keyless = get("keyless-signing").lower()
    if keyless not in KEYLESS:
        problems.append(f"input `keyless-signing` must be `auto`, `true` or `false`, not {keyless!r}")
    identities = [x for x in re.split(r"[\s,]+", get("trusted-identities")) if x]
    problems += [
        f"input `trusted-identities`: {x!r} is not a URL or e-mail identity (e.g. "
        "https://github.com/OWNER/REPO/.github/workflows/verifily.yml@refs/heads/main)"
        for x in identities
        if not re.fullmatch(r"https://\S+|[^@\s]+@[^@\s]+", x)
    ]
    if problems:
        raise VerifilyError("invalid action inputs: " + "; ".join(problems), hint="see action.yml for each input")
    return Inputs(
        config=get("config"),
        dataset=get("dataset") or None,
        slice_by=comma_list(get("slice-by")),
        token=env.get("INPUT_GITHUB-TOKEN", "").strip(),
        baseline=get("baseline"),
        artifact_name=get("artifact-name"),
        comment=comment == "true",
        comment_author=author or None,
        fail_on=get("fail-on") or None,
        mode=mode,
        working_directory=get("working-directory"),
        signing_key=env.get("INPUT_SIGNING-KEY", "").strip(),
        trusted_keys=trusted_keys(get("trusted-keys")),
        keyless_signing=keyless,
        trusted_identities=identities,
    )


_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S)


def trusted_keys(text: str) -> list[str]:
    """The `trusted-keys` input: PEM public key blocks and key ids (64 hex digits), separated by line breaks or
    commas."""
    return _PEM.findall(text) + comma_list(_PEM.sub("\n", text))


def fail_on_rules(text: str | None) -> list[str]:
    """The `fail-on` input: one rule per line (commas also separate, as in YAML flow-style lists, except inside a
    rule's double-quoted slice value: `accuracy@source="a,b"<-0.02`)."""
    from ..evaluate.slices import split_list

    return split_list(text or "")


def check_fail_on(text: str | None) -> None:
    """Parse the rules before any training, so a typo fails in seconds, not after the run."""
    from ..compare.gates import parse_rules

    parse_rules(fail_on_rules(text), "input fail-on")
