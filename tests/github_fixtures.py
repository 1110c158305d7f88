"""Locate the npm fixtures (GitHub's OpenAPI description and GraphQL schema, real webhook payloads) and validate
against the spec.

The packages are installed by tests/npm_fixtures.sh into a cache folder outside the repository. When they are
missing, tests skip with the command to run — except in CI (env CI set), where missing fixtures fail the run.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import re
import struct
import zipfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

REPO = Path(__file__).resolve().parent.parent


def npm_prefix() -> Path:
    env = os.environ.get("VERIFILY_NPM_FIXTURES")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "verifily-npm"


OPENAPI_REL = "node_modules/@octokit/openapi/generated/api.github.com.json"
WEBHOOKS_REL = "node_modules/@octokit/webhooks-examples/api.github.com/index.json"
GRAPHQL_REL = "node_modules/@octokit/graphql-schema/schema.graphql"


def _require(rel: str) -> Path:
    p = npm_prefix() / rel
    if p.is_file():
        return p
    msg = f"npm fixture {rel} not found under {npm_prefix()}; run tests/npm_fixtures.sh"
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI is set: fixtures are required)")
    pytest.skip(msg)


@cache
def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def openapi() -> dict[str, Any]:
    return _load_json(str(_require(OPENAPI_REL)))


def graphql_schema() -> str:
    """GitHub's public GraphQL schema (SDL text, @octokit/graphql-schema)."""
    return _require(GRAPHQL_REL).read_text(encoding="utf-8")


def webhook_example(event: str, action: str | None = None, index: int = 0, pred=None) -> dict[str, Any]:
    """A deep copy of a real webhook payload from @octokit/webhooks-examples."""
    events = {e["name"]: e for e in _load_json(str(_require(WEBHOOKS_REL)))}
    found = [
        x
        for x in events[event]["examples"]
        if (action is None or x.get("action") == action) and (pred is None or pred(x))
    ]
    return copy.deepcopy(found[index])


# --- OpenAPI 3.0 -> JSON Schema -------------------------------------------------------------------------------

_DROP = {"example", "examples", "discriminator", "nullable", "xml", "externalDocs", "deprecated"}


def _conv(n: Any) -> Any:
    """OpenAPI 3.0 schema objects to draft-7 JSON Schema: `nullable: true` becomes a null type/branch."""
    if isinstance(n, list):
        return [_conv(x) for x in n]
    if not isinstance(n, dict):
        return n
    out: dict[str, Any] = {}
    for k, v in n.items():
        if k in ("properties", "patternProperties"):
            out[k] = {pk: _conv(pv) for pk, pv in v.items()}
        elif k in _DROP:
            continue
        elif k in ("enum", "default", "const"):
            out[k] = v
        else:
            out[k] = _conv(v)
    if n.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _components() -> dict[str, Any]:
    comps = openapi()["components"]
    return {"schemas": {k: _conv(v) for k, v in comps["schemas"].items()}}


def _ref(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        node = doc
        for p in parts:
            node = node[p]
    return node


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    root = {"components": _components(), "allOf": [_conv(schema)]}
    v = Draft7Validator(root)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message[:300]}" for e in v.iter_errors(instance)]


@cache
def _routes() -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in openapi()["paths"]:
        pieces = re.split(r"\{[^}]+\}", template)
        rx = (
            "^"
            + "".join(re.escape(p) + (f"(?P<p{i}>[^/]+)" if i < len(pieces) - 1 else "") for i, p in enumerate(pieces))
            + "$"
        )
        literal = len([s for s in template.split("/") if s and not s.startswith("{")])
        out.append((re.compile(rx), template, literal))
    out.sort(key=lambda t: -t[2])  # literal segments win over parameters
    return out


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    doc = openapi()
    for rx, template, _ in _routes():
        m = rx.match(path)
        if m and method.lower() in doc["paths"][template]:
            names = re.findall(r"\{([^}]+)\}", template)
            values = {names[int(k[1:])]: v for k, v in m.groupdict().items()}
            return template, doc["paths"][template][method.lower()], values
    return None


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    t = schema.get("type")
    if t == "integer":
        return int(value) if re.fullmatch(r"-?\d+", value) else value
    if t == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def validate_request(method: str, path: str, query: dict[str, list[str]], body: Any) -> list[str]:
    """Problems with a request, judged by GitHub's OpenAPI description (empty list: valid)."""
    doc = openapi()
    found = find_operation(method, path)
    if not found:
        return [f"{method} {path}: no such operation in GitHub's API"]
    template, op, path_values = found
    params = [_ref(doc, p) for p in doc["paths"][template].get("parameters", []) + op.get("parameters", [])]
    problems = []
    declared = {(p["in"], p["name"]): p for p in params}
    for name, values in query.items():
        p = declared.get(("query", name))
        if p is None:
            problems.append(f"{op['operationId']}: undeclared query parameter {name!r}")
            continue
        for e in schema_errors(p.get("schema", {}), _coerce(values[-1], p.get("schema", {}))):
            problems.append(f"{op['operationId']}: query {name}={values[-1]!r}: {e}")
    for name, value in path_values.items():
        p = declared.get(("path", name), {})
        for e in schema_errors(p.get("schema", {}), _coerce(value, p.get("schema", {}))):
            problems.append(f"{op['operationId']}: path {name}={value!r}: {e}")
    for (where, name), p in declared.items():
        if where == "query" and p.get("required") and name not in query:
            problems.append(f"{op['operationId']}: missing required query parameter {name!r}")
    rb = op.get("requestBody")
    if rb:
        rb = _ref(doc, rb)
        if body is None:
            if rb.get("required"):
                problems.append(f"{op['operationId']}: missing request body")
        else:
            schema = rb["content"]["application/json"]["schema"]
            problems += [f"{op['operationId']}: body {e}" for e in schema_errors(schema, body)]
    elif body is not None:
        problems.append(f"{op['operationId']}: this operation takes no request body")
    return problems


def validate_response(method: str, path: str, status: int, body: Any) -> list[str]:
    doc = openapi()
    found = find_operation(method, path)
    if not found:
        return [f"{method} {path}: no such operation"]
    _, op, _ = found
    resp = op["responses"].get(str(status))
    if resp is None:
        return [f"{op['operationId']}: status {status} is not documented"]
    resp = _ref(doc, resp)
    content = resp.get("content", {}).get("application/json")
    if content is None:
        return [] if body is None else [f"{op['operationId']}: {status} has no JSON body in the spec"]
    return [f"{op['operationId']} {status}: {e}" for e in schema_errors(content["schema"], body)]


def example(name: str) -> Any:
    """A deep copy of `components/examples/<name>` (GitHub's own sample data)."""
    return copy.deepcopy(openapi()["components"]["examples"][name]["value"])


def response_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def zip_of(members: dict[str, bytes]) -> bytes:
    """A zip archive (deflated) of name -> bytes, as an artifact download serves it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def patched_zip(
    members: dict[str, bytes], *, claim_compressed: dict[str, int] | None = None, encrypted: Iterable[str] = ()
) -> bytes:
    """`zip_of(members)` with header fields rewritten as a hostile archive would: `claim_compressed` sets a member's
    compressed size in its local and central headers (a lie about how well it compresses), `encrypted` sets the
    encryption flag (the data stays plain; a reader must refuse it anyway)."""
    data = bytearray(zip_of(members))
    claims, locked = claim_compressed or {}, set(encrypted)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        local = {i.filename: i.header_offset for i in zf.infolist()}
        pos = zf.start_dir
    while data[pos : pos + 4] == b"PK\x01\x02":  # central directory entries: sizes at 20, flags at 8
        nlen, elen, clen = struct.unpack_from("<HHH", data, pos + 28)
        name = data[pos + 46 : pos + 46 + nlen].decode()
        if name in claims:
            struct.pack_into("<I", data, pos + 20, claims[name])
            struct.pack_into("<I", data, local[name] + 18, claims[name])
        if name in locked:
            for at in (pos + 8, local[name] + 6):
                struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | 0x1)
        pos += 46 + nlen + elen + clen
    return bytes(data)


HOSTILE_ZIPS = ("file and folder", "dot member", "encrypted member", "lying sizes")


def hostile_zip(kind: str, members: dict[str, bytes]) -> bytes:
    """`members` zipped with one of HOSTILE_ZIPS' twists, each well-formed enough for zipfile to open: a name that
    is a file and a folder, a member called `.`, an encrypted member, or a member whose compressed size claims 150x
    more bytes than its data uses (1 MiB of zeros claiming a 7x ratio; the bytes after it are there to be read)."""
    if kind == "file and folder":
        return zip_of({**members, "eval": b"a file", "eval/x/eval_results.json": b"{}"})
    if kind == "dot member":
        return zip_of({**members, ".": b"the folder itself"})
    if kind == "encrypted member":
        return patched_zip(members, encrypted=list(members)[-1:])
    if kind == "lying sizes":
        zeros = b"\0" * (1024 * 1024)
        with zipfile.ZipFile(io.BytesIO(zip_of({"zeros": zeros}))) as zf:
            real = zf.getinfo("zeros").compress_size
        filler = random.Random(0).randbytes(160 * real)  # does not compress
        return patched_zip({"zeros": zeros, "filler.bin": filler, **members}, claim_compressed={"zeros": real * 150})
    raise ValueError(kind)
