"""What the docs and the package metadata say is true of the code (issue 22, item 18): config keys named in the README
and the CLI exist where they are said to be, environment.json holds what the README says, and pyproject.toml asks for
the transformers the code needs."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.paths import REPO
from verifily_action import environment
from verifily_action.schemas import load_schema

pytestmark = pytest.mark.unit

# transformers 5.2.0 added TrainingArguments(train_sampling_strategy=...), which train/trainer.py passes (5.1.0
# raises TypeError); it also counts a partial gradient accumulation as an optimizer step, as plan.estimate_steps does.
TRANSFORMERS_NEEDED = Version("5.2.0")


def documented_texts() -> dict[str, str]:
    files = [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "verifily_action").rglob("*.py")),
    ]
    return {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in files}


def test_every_dotted_config_key_the_docs_name_is_in_the_schema():
    props = load_schema("train.schema.json")["properties"]
    sections = [name for name, sub in props.items() if "properties" in sub]
    pattern = re.compile(rf"`({'|'.join(sections)})\.([a-z0-9_]+)")
    wrong = [
        f"{where}: {section}.{key}"
        for where, text in documented_texts().items()
        for section, key in pattern.findall(text)
        if key not in props[section]["properties"] and key not in ("yml", "yaml", "json", "jsonl", "py", "md")  # files
    ]
    assert wrong == []


def test_report_to_is_named_where_it_is():
    props = load_schema("train.schema.json")["properties"]
    assert "report_to" in props and "report_to" not in props["training"]["properties"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "`report_to`" in readme


def test_the_readme_says_what_environment_json_holds():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("├── environment.json")]
    assert "lock" not in line and "installed packages" not in line
    assert f"{len(environment.PACKAGES)} ML library versions" in line
    assert all(name in environment.PACKAGES for name in ("torch", "transformers", "peft"))
    assert set(environment.collect()) >= {"python", "packages", "cuda", "cpu", "os", "git"}


def test_pyproject_asks_for_the_transformers_the_code_needs():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")  # tomllib is 3.11+; the project supports 3.10
    (req,) = [Requirement(d) for d in re.findall(r'^\s*"(transformers\b[^"]*)"', text, re.MULTILINE)]
    minimum = min(Version(s.version) for s in req.specifier if s.operator in (">=", "=="))
    assert minimum >= TRANSFORMERS_NEEDED
    from transformers import TrainingArguments

    assert "train_sampling_strategy" in TrainingArguments.__dataclass_fields__


def test_every_shipped_schema_is_a_valid_draft_2020_12_schema():
    """`schemas.validator` trusts the shipped schemas (no metaschema check at run time); this is that check."""
    from jsonschema import Draft202012Validator

    names = sorted(p.name for p in (REPO / "schemas").glob("*.schema.json"))
    assert "train.schema.json" in names and "eval_results.schema.json" in names
    for name in names:
        Draft202012Validator.check_schema(load_schema(name))
