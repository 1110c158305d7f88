"""`name@version` references: find `<root>/<name>/<version>/manifest.yaml`, or take a plain manifest path.

The root comes from the caller (config `datasets_root` or `--datasets-root`), else `VERIFILY_DATASETS`, else
`./datasets`; `search_roots` is the one rule for where the stages look. An unknown name or version is an error
that lists what exists (and the closest match). With VERIFILY_SERVER set (or a config's `server:`), `name@version`
comes from that server instead, through a local cache keyed by dataset hash and checked on every use
(`remote.pull.pull_cached`).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from ..errors import VerifilyError
from .manifest import MANIFEST_NAMES, Manifest, find_manifest, load_manifest

ENV_ROOT = "VERIFILY_DATASETS"
ENV_SERVER = "VERIFILY_SERVER"  # the server `name@version` comes from (also the client commands' default)
DEFAULT_ROOT = "datasets"
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)@(?P<version>[A-Za-z0-9][A-Za-z0-9._-]*)$")


def datasets_root(root: str | Path | None = None) -> Path:
    """The datasets root: the argument, else $VERIFILY_DATASETS, else ./datasets."""
    if root is not None and str(root) != "":
        return Path(root)
    return Path(os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


def search_roots(given: str | Path | None = None, recorded: str | Path | None = None) -> list[Path]:
    """Where `name@version` is looked up, in order: the root given on the command line (`--datasets-root`),
    $VERIFILY_DATASETS, the root a config or a run records (skipped when it does not exist and another is set),
    then ./datasets. The one rule for train, eval, compare's dataset diff and reproduce --verify-only."""
    roots = [Path(r) for r in (given, os.environ.get(ENV_ROOT)) if r]
    if recorded and (Path(recorded).is_dir() or not roots):
        roots.append(Path(recorded))
    roots.append(Path(DEFAULT_ROOT))
    return list(dict.fromkeys(roots))


def resolve_first(ref: str, roots: list[Path], *, server: str | None = None) -> Manifest:
    """The manifest `ref` names under the first of `roots` that holds it; the first root's error when none does.
    With a server (VERIFILY_SERVER, else `server`: a run config's `server:`), `name@version` comes from it."""
    if server or os.environ.get(ENV_SERVER):
        return resolve(ref, roots[0] if roots else None, server=server)
    first: VerifilyError | None = None
    for root in roots:
        try:
            return resolve(ref, root)
        except VerifilyError as e:
            first = first or e
    raise first or VerifilyError(f"dataset {ref} not found: no datasets root to look in")


def recorded_root(config_path: Path) -> Path | None:
    """The datasets_root a run's config.yaml records (train writes it absolute); None when it names no folder or
    the file cannot be read safely (the hash chain's check of config.yaml reports why)."""
    from ..yamlsource import load_yaml

    try:
        cfg = load_yaml(config_path, "run config")
    except VerifilyError:
        return None
    root = cfg.get("datasets_root") if isinstance(cfg, dict) else None
    return Path(root) if isinstance(root, str) and Path(root).is_absolute() and Path(root).is_dir() else None


def is_path_ref(ref: str) -> bool:
    """A reference is a manifest path when it names a file/folder or looks like one (has a slash or extension)."""
    return (
        "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml", ".json")) or ("@" not in ref and Path(ref).exists())
    )


def resolve(
    ref: str, root: str | Path | None = None, *, server: str | None = None, from_server: bool = True
) -> Manifest:
    """Load the manifest that `ref` names: `name@version` under the datasets root, or from a server
    (VERIFILY_SERVER, else `server`, a config's `server:`) unless `from_server` is False (as for `dataset push`),
    or a manifest path."""
    ref = str(ref).strip()
    if is_path_ref(ref):
        return load_manifest(ref)
    m = _REF.match(ref)
    base = datasets_root(root)
    if not m:
        raise VerifilyError(
            f"dataset reference {ref!r} is not `name@version` or a manifest path",
            hint=_listing(base, ref.split("@")[0]) or "e.g. ds_demo@v1, or path/to/manifest.yaml",
        )
    name, version = m["name"], m["version"]
    url = os.environ.get(ENV_SERVER) or server
    if from_server and url:
        from ..remote.pull import pull_cached

        return pull_cached(name, version, url)
    if not base.is_dir():
        raise VerifilyError(
            f"datasets root {base} does not exist (looking for {ref})",
            hint=f"pass --datasets-root, set {ENV_ROOT}, or set datasets_root in the config",
        )
    names = list_names(base)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        raise VerifilyError(
            f"no dataset named {name!r} in {base}",
            hint=(f"did you mean {close[0]!r}? " if close else "") + f"datasets there: {', '.join(names) or '(none)'}",
        )
    versions = list_versions(base, name)
    folder = base / name / version
    manifest_path = find_manifest(folder) if folder.is_dir() else None
    if manifest_path is None:
        raise VerifilyError(
            f"dataset {name!r} has no version {version!r} in {base}",
            hint=f"versions of {name}: {', '.join(versions) or '(none)'}"
            + (f"; {folder} holds no {' / '.join(MANIFEST_NAMES)}" if folder.is_dir() else ""),
        )
    manifest = load_manifest(manifest_path)
    if (manifest.name, manifest.version) != (name, version):
        raise VerifilyError(
            f"{manifest_path} says it is {manifest.ref}, but its folder says {ref}",
            hint="make `name` and `version` in the manifest match <root>/<name>/<version>/",
        )
    return manifest


def list_names(base: Path) -> list[str]:
    """Dataset names under a root: folders holding at least one version folder with a manifest."""
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if d.is_dir() and list_versions(base, d.name))


def list_versions(base: Path, name: str) -> list[str]:
    folder = base / name
    if not folder.is_dir():
        return []
    return sorted(v.name for v in folder.iterdir() if v.is_dir() and find_manifest(v) is not None)


def _listing(base: Path, name: str) -> str:
    versions = list_versions(base, name)
    if versions:
        return "versions of {}: {}".format(name, ", ".join(f"{name}@{v}" for v in versions))
    names = list_names(base)
    return f"datasets in {base}: {', '.join(names)}" if names else ""
