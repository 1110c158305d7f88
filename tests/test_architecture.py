"""The package's shape, as promised in the README's package map: no import cycle, no private names taken from
another package, the stages that read run folders (`compare/`, `report/`, `runs/`) never load torch or
transformers, run file names spelled only in `runs/layout.py`, one markdown escaper, and action.yml's input
defaults equal to the ones the Action applies itself."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from verifily_action.action.inputs import DEFAULTS, read_inputs
from verifily_action.runs import layout

from .paths import REPO

pytestmark = pytest.mark.unit

PACKAGE = REPO / "verifily_action"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, *, top_level_only: bool) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for each import of `module`; with `top_level_only`, the imports
    that run when the module is imported (module body, including `if`/`try` blocks such as TYPE_CHECKING)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    if top_level_only:
        nodes: list[ast.AST] = []
        todo: list[ast.AST] = list(tree.body)
        while todo:
            n = todo.pop()
            nodes.append(n)
            if isinstance(n, (ast.If, ast.Try)):
                todo += [*n.body, *n.orelse, *getattr(n, "finalbody", []), *getattr(n, "handlers", [])]
            elif isinstance(n, ast.ExceptHandler):
                todo += n.body
    else:
        nodes = list(ast.walk(tree))
    out = []
    for n in nodes:
        if isinstance(n, ast.Import):
            out += [(a.name, "", n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            src = _absolute(module, n)
            out += [(src, a.name, n.lineno) for a in n.names]
    return out


def _edges(module: str) -> set[str]:
    """The package modules `module` needs loaded when it is imported."""
    out = set()
    for src, name, _ in _imports(module, top_level_only=True):
        if f"{src}.{name}" in MODULES:
            out.add(f"{src}.{name}")  # `from pkg import submodule`
        elif src in MODULES:
            out.add(src)
    out.discard(module)
    return out


def test_the_import_graph_has_no_cycle():
    graph = {m: _edges(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for nxt in sorted(graph[m]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package's __init__ re-exporting its own submodules is not a cycle between modules
    real = [c for c in cycles if len({x.rsplit(".", 1)[0] if MODULES[x].name != "__init__.py" else x for x in c}) > 1]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_a_cycle_would_be_found():
    """The checker itself: the edges it reads include relative imports and TYPE_CHECKING blocks."""
    edges = _edges("verifily_action.action.flow")
    assert {"verifily_action.action.inputs", "verifily_action.action.stages", "verifily_action.errors"} <= edges
    assert "verifily_action.action.inputs" in _edges("verifily_action.action.stages")


def test_no_private_name_is_imported_from_another_package():
    found = []
    for module in MODULES:
        package = module.rsplit(".", 1)[0] if MODULES[module].name != "__init__.py" else module
        for src, name, line in _imports(module, top_level_only=False):
            if not src.startswith("verifily_action"):
                continue
            owner = src if f"{src}.{name}" not in MODULES else f"{src}.{name}"
            owner_pkg = owner.rsplit(".", 1)[0] if MODULES.get(owner, Path()).name != "__init__.py" else owner
            if name.startswith("_") and not name.startswith("__") and owner_pkg != package:
                found.append(f"{MODULES[module].relative_to(REPO)}:{line} imports {src}.{name}")
    assert not found, found


@pytest.mark.parametrize("package", ["compare", "report", "runs"])
def test_stages_that_read_run_folders_never_load_torch(package):
    mods = sorted(
        m for m in MODULES if m == f"verifily_action.{package}" or m.startswith(f"verifily_action.{package}.")
    )
    assert len(mods) > 3, mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'accelerate') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing verifily_action.{package} loaded {proc.stdout.strip()}"


RUN_FILES = [
    layout.RUN_META,
    layout.HASHES,
    layout.ENVIRONMENT,
    layout.TRAIN_LOG,
    layout.EVAL_RESULTS,
    layout.PREDICTIONS,
    layout.HARD_EXAMPLES,
    layout.LABEL_MAP,
    "adapter_model.safetensors",
]


def _run_file_literals(path: Path) -> list[str]:
    """String literals (docstrings aside) that spell a run file's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, RUN_FILES)) + r")(?![\w])")
    return [
        f"{path.relative_to(REPO)}:{n.lineno} {n.value!r}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docstrings
        and pattern.search(n.value)
    ]


def test_run_file_names_are_spelled_only_in_runs():
    found = [
        hit for m, p in MODULES.items() if not m.startswith("verifily_action.runs") for hit in _run_file_literals(p)
    ]
    found += _run_file_literals(REPO / "entrypoint.py")
    assert not found, found
    # the checker sees a literal where there is one
    assert _run_file_literals(PACKAGE / "runs" / "layout.py")


def test_one_markdown_escaper():
    """Every markdown output goes through report.escape; no module keeps an escaper of its own."""
    own = []
    for m, p in MODULES.items():
        if m == "verifily_action.report.escape":
            continue
        text = p.read_text(encoding="utf-8")
        # (github/workflow.py's escape_data/escape_property escape workflow commands, not markdown)
        for hit in re.finditer(r"^def (\w*(?:md_escape|markdown_escape|sanitize|inert)\w*)\(", text, re.M):
            own.append(f"{p.relative_to(REPO)}: def {hit[1]}")
        if re.search(r"""\.replace\("\|", "\\\\\|"\)""", text):
            own.append(f"{p.relative_to(REPO)}: escapes table pipes itself")
    assert not own, own


def test_action_input_defaults_match_action_yml():
    spec = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))["inputs"]
    declared = {k: str(v.get("default", "")) for k, v in spec.items() if k != "github-token"}
    assert declared == DEFAULTS
    got = read_inputs({})  # nothing set: what the Action applies itself
    assert (got.config, got.baseline, got.artifact_name, got.mode, got.working_directory) == (
        spec["config"]["default"],
        spec["baseline"]["default"],
        spec["artifact-name"]["default"],
        spec["mode"]["default"],
        spec["working-directory"]["default"],
    )
    assert got.comment is (spec["comment"]["default"] == "true")
    assert got.dataset is None and got.fail_on is None and got.slice_by == []


@pytest.mark.parametrize("variant", ["gpu", "comment"])
def test_the_action_variants_defaults_match_too(variant):
    """gpu/action.yml has every input, comment/action.yml those comment mode reads: each default is DEFAULTS' (and
    tests/test_action_images.py holds their descriptions equal to the root's)."""
    spec = yaml.safe_load((REPO / variant / "action.yml").read_text(encoding="utf-8"))["inputs"]
    declared = {k: str(v.get("default", "")) for k, v in spec.items() if k != "github-token"}
    if variant == "gpu":
        assert declared == DEFAULTS
    else:
        assert declared.items() <= DEFAULTS.items() and "mode" not in declared and "dataset" not in declared


def test_every_package_is_installed():
    """pyproject.toml lists packages by name: a new package missing there works in the editable checkout and is
    absent from the wheel and the image."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert folders <= listed, sorted(folders - listed)
