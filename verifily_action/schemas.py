"""Find and load the JSON Schemas in schemas/ (shipped inside the package as verifily_action.schema_files)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any


def schema_path(name: str) -> Path:
    """Path of `schemas/<name>`: the repository's folder in a checkout, the package data when installed."""
    repo = Path(__file__).resolve().parent.parent / "schemas" / name
    if repo.is_file():
        return repo
    return Path(str(resources.files("verifily_action.schema_files").joinpath(name)))


@cache
def load_schema(name: str) -> dict[str, Any]:
    with open(schema_path(name), encoding="utf-8") as f:
        return json.load(f)


@cache
def validator(name: str):
    """A Draft 2020-12 validator for `schemas/<name>` (jsonschema is imported here, not at CLI start-up). The
    schemas ship with the package and a test checks each against the metaschema, so no command pays for that check
    (~20 ms of every `compare`, `validate` and `train`)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


def apply_defaults(schema: dict[str, Any], data: Any) -> Any:
    """Fill every missing optional property with its schema `default`, recursively through objects."""
    if not isinstance(data, dict) or "properties" not in schema:
        return data
    out = dict(data)
    for key, sub in schema["properties"].items():
        if key not in out and "default" in sub:
            out[key] = json.loads(json.dumps(sub["default"]))  # a fresh copy
        if key in out:
            out[key] = apply_defaults(sub, out[key])
    return out
