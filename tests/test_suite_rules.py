"""The test suite's own rules (CONTRIBUTING.md): every test module is in one tier, fixtures come through
tests/conftest.py and its plugins (no test module imports a fixture or another test module), and a run without
../shared/data names the tests it skipped for it at the end."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .paths import SHARED_DATA_ENV

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parent
TIERS = {"unit", "integration", "container", "gpu", "llm"}  # pyproject.toml's markers
PLUGINS = ("conftest.py", "github_fake.py", "action_helpers.py", "shared_data.py")  # where fixtures are defined
NOQA_REDEFINED = "noqa: " + "F811"  # spelled apart so this file does not match itself


def _tiers(path: Path) -> list[str]:
    """The tier markers in a module's `pytestmark = ...` (pytest.mark.<tier>, alone or in a list)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return [
                n.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Attribute) and n.attr in TIERS and isinstance(n.value, ast.Attribute)
            ]
    return []


def test_every_test_module_is_in_exactly_one_tier():
    modules = sorted(TESTS.glob("test_*.py"))
    assert modules
    wrong = {p.name: _tiers(p) for p in modules if len(_tiers(p)) != 1}
    assert not wrong, f"modules without exactly one of {sorted(TIERS)} in their pytestmark: {wrong}"


def _fixture_names() -> set[str]:
    names = set()
    for name in PLUGINS:
        for node in ast.walk(ast.parse((TESTS / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
    return names


def test_no_module_imports_a_fixture_or_a_test_module():
    fixtures = _fixture_names()
    assert {"fake_github", "gh", "env", "shared_data"} <= fixtures
    problems = []
    for path in sorted(TESTS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if NOQA_REDEFINED in text:
            problems.append(f"{path.name}: `{NOQA_REDEFINED}` (a fixture imported and redefined as an argument)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if module.split(".")[-1].startswith("test_"):
                    problems.append(f"{path.name}:{node.lineno}: imports the test module {module}")
                if module.split(".")[-1] == "conftest":
                    problems.append(f"{path.name}:{node.lineno}: imports conftest (use a helper module)")
                ours = node.level > 0 or module.split(".")[0] == "tests"
                taken = {a.name for a in node.names} & fixtures if ours else set()
                if taken:
                    problems.append(f"{path.name}:{node.lineno}: imports the fixture(s) {sorted(taken)}")
            elif isinstance(node, ast.Import):
                problems += [
                    f"{path.name}:{node.lineno}: imports the test module {a.name}"
                    for a in node.names
                    if a.name.split(".")[-1].startswith("test_")
                ]
    assert not problems, "\n".join(problems)


INNER = """
def test_needs_it(shared_data):
    assert shared_data.is_dir()


def test_does_not():
    pass
"""


def test_a_run_without_shared_data_names_the_tests_it_skipped(pytester, monkeypatch):
    """A pytest run of its own (a subprocess: tests/paths.py reads the variable on import) with the plugin."""
    pytester.makeconftest('pytest_plugins = ["tests.shared_data"]\n')
    pytester.makepyfile(test_inner=INNER)
    monkeypatch.setenv("PYTHONPATH", str(TESTS.parent))  # `tests` importable from the temp folder
    missing = pytester.path / "no-shared-data"
    monkeypatch.setenv(SHARED_DATA_ENV, str(missing))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-ra")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"*= SKIPPED: 1 test needs {missing}, which is missing =*",
            "  test_inner.py::test_needs_it",
            f"*{SHARED_DATA_ENV}*",
        ]
    )
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] *: needs shared data: {missing} is missing"])

    present = pytester.mkdir("shared-data")
    monkeypatch.setenv(SHARED_DATA_ENV, str(present))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-ra")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*SKIPPED*")
