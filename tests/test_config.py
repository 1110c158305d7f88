"""Config loading and validation: the schema is the source of truth; every broken config gets a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from verifily_action import config as cfgmod
from verifily_action.errors import VerifilyError
from verifily_action.schemas import load_schema

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
task: classification
model: all-MiniLM-L6-v2
dataset: ds_demo@v1
lora:
  r: 8
training:
  epochs: 1
"""


def problems_of(tmp_path: Path, text: str | bytes, name: str = "train.yaml"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    with pytest.raises(VerifilyError) as exc:
        cfgmod.load_config(p)
    return exc.value


def test_example_config_is_valid():
    cfg = cfgmod.load_config(REPO / "examples" / "train.yaml")
    assert cfg.task == "classification"
    assert cfg.lora.r == 16
    # defaults filled from the schema, not from the dataclass
    assert (
        cfg.training.scheduler
        == load_schema("train.schema.json")["properties"]["training"]["properties"]["scheduler"]["default"]
    )


def test_example_config_is_short_and_points_at_schema():
    text = (REPO / "examples" / "train.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schemas/train.schema.json"
    assert len(text.splitlines()) <= 12


def _walk(schema: dict, cls: type, path: str):
    props = schema["properties"]
    names = [f.name for f in fields(cls) if f.name != "source_path"]
    assert sorted(names) == sorted(props), f"schema and {cls.__name__} differ at {path}"
    for name in names:
        if name in cfgmod.SECTIONS:
            _walk(props[name], cfgmod.SECTIONS[name], f"{path}.{name}")


def test_schema_and_typed_config_cannot_drift():
    schema = load_schema("train.schema.json")
    _walk(schema, cfgmod.TrainConfig, "$")
    # every object in the schema that has properties is a typed section
    objects = {k for k, v in schema["properties"].items() if v.get("type") == "object"}
    assert objects == set(cfgmod.SECTIONS)


def _all_properties(schema: dict, path: str = "$"):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}.{key}", sub, key in schema.get("required", [])
        yield from _all_properties(sub, f"{path}.{key}")


def test_every_property_documented_with_default_and_closed():
    schema = load_schema("train.schema.json")
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    for path, sub, required in _all_properties(schema):
        assert sub.get("description"), f"{path} has no description"
        assert required or "default" in sub, f"{path} has no default"
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_defaults_are_valid_against_the_schema():
    from verifily_action.schemas import validator

    minimal = {"task": "sft", "model": "m", "dataset": "d@v1"}
    full = cfgmod.from_dict(minimal).to_dict()
    assert list(validator("train.schema.json").iter_errors(full)) == []


# (name, content, expected substring in the rendered error, expected line or None)
BROKEN = [
    ("unknown top key", GOOD + "lorra: {r: 4}\n", "unknown key `lorra`", 8),
    ("typo hint", GOOD + "lorra: {r: 4}\n", "did you mean `lora`?", 8),
    ("unknown nested key", GOOD.replace("  r: 8", "  rank: 8"), "unknown key `rank`", 5),
    ("unknown training key", GOOD + "  epoch: 2\n", "did you mean `epochs`?", 8),
    ("unknown eval key", GOOD + "eval: {slice: [source]}\n", "unknown key `slice`", 8),
    ("unknown fields key", GOOD + "fields: {txt: sentence}\n", "did you mean `text`?", 8),
    ("wrong type int", GOOD.replace("r: 8", "r: eight"), "expected integer, got string 'eight'", 5),
    ("wrong type bool", GOOD + "  gradient_checkpointing: maybe\n", "expected boolean", 8),
    ("wrong type section", GOOD + "eval: 3\n", "expected object, got integer 3", 8),
    ("negative", GOOD.replace("epochs: 1", "epochs: -1"), "-1 is less than or equal to the minimum of 0", 7),
    ("range", GOOD + "  learning_rate: 5\n", "greater than the maximum of 1", 8),
    ("bad enum", GOOD.replace("task: classification", "task: clasification"), "did you mean `classification`?", 1),
    ("bad precision", GOOD + "  precision: fp8\n", "'fp8' is not one of: auto, fp32, bf16, fp16", 8),
    ("bad quantization", GOOD + "quantization: 3bit\n", "is not one of: none, 4bit, 8bit", 8),
    ("missing task", GOOD.replace("task: classification\n", ""), "missing required key `task`", 1),
    ("missing model", GOOD.replace("model: all-MiniLM-L6-v2\n", ""), "missing required key `model`", 1),
    ("target_modules", GOOD.replace("  r: 8", "  r: 8\n  target_modules: everything"), "neither `auto` nor a list", 6),
    ("key in wrong section", GOOD + "  target_modules: [q]\n", "`target_modules` belongs under `lora`", 8),
    ("empty list items", GOOD + "eval: {slice_by: [source, source]}\n", "non-unique", 8),
    ("yaml syntax", GOOD + "training: [epochs: 1\n", "YAML syntax error", None),
    ("tab indentation", "task: sft\n\tmodel: x\n", "YAML syntax error", 2),
    ("top-level list", "- task: sft\n- model: x\n", "top level is a list", 1),
    ("top-level string", "just some text\n", "top level is a string", 1),
    ("empty file", "", "the config is empty", None),
    ("only comments", "# nothing here\n", "holds no value", None),
    ("duplicate key", GOOD + "task: sft\n", "duplicate key 'task'", 8),
    ("packing needs sft", GOOD + "  packing: true\n", "packing works for task sft only, not classification", 8),
    ("alias bomb", 'a: &a ["lol","lol"]\nb: &b [*a,*a,*a]\nc: &c [*b,*b,*b]\n', "anchors and aliases", 1),
    ("run_name pattern", GOOD + "run_name: ../escape\n", "does not match", 8),
    ("not a number", GOOD + "  learning_rate: .nan\n", "'.nan' is not a finite number", 8),
    ("infinity", GOOD.replace("epochs: 1", "epochs: .inf"), "'.inf' is not a finite number", 7),
    # PyYAML's scanner is quadratic in nesting depth and building values recurses: refused from the event stream
    ("deep flow nesting", GOOD + "x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested more than 64 levels", 8),
    ("deep block nesting", GOOD + "x:\n" + "- " * 5_000 + "1\n", "nested more than 64 levels", 9),
    (
        "python tag",
        GOOD.replace("model: all-MiniLM-L6-v2", "model: !!python/object/apply:os.system [ls]"),
        "unsupported YAML value",
        2,
    ),
]


@pytest.mark.parametrize("name,content,expected,line", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configs(tmp_path, name, content, expected, line):
    err = problems_of(tmp_path, content)
    rendered = err.render()
    assert expected in rendered, rendered
    assert err.exit_code == 2
    assert err.problems, "every error names at least one problem"
    if line is not None:
        assert any(p.line == line for p in err.problems), [(p.line, p.message) for p in err.problems]
    assert all(p.file and p.file.endswith("train.yaml") for p in err.problems)


def test_all_problems_reported_at_once(tmp_path):
    text = "task: sft\nmodel: 3\nlorra: {}\ntraining: {epochs: 0, batch_size: big, seeds: 1}\n"
    err = problems_of(tmp_path, text)
    messages = [p.message for p in err.problems]
    # missing dataset, model type, lorra, epochs, batch_size, seeds
    assert len(messages) == 6, messages
    assert messages[0] == "missing required key `dataset`"
    # sorted by line
    lines = [p.line for p in err.problems]
    assert lines == sorted(lines)


def test_missing_dataset_reported_with_others(tmp_path):
    err = problems_of(tmp_path, "task: sft\nmodel: 3\n")
    msgs = " | ".join(p.message for p in err.problems)
    assert "missing required key `dataset`" in msgs and "expected string" in msgs


def test_non_utf8_bytes(tmp_path):
    err = problems_of(tmp_path, b"task: sft\nmodel: caf\xe9\n")
    p = err.problems[0]
    assert "invalid UTF-8 byte 0xe9" in p.message and p.line == 2 and p.column == 11


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(VerifilyError, match="config not found"):
        cfgmod.load_config(tmp_path / "nope.yaml")
    with pytest.raises(VerifilyError, match="is a directory"):
        cfgmod.load_config(tmp_path)


def test_huge_file_refused_quickly(tmp_path, monkeypatch):
    import yaml

    def never(*args, **kwargs):
        raise AssertionError("a file over the size cap reached the YAML parser")

    p = tmp_path / "big.yaml"
    p.write_text("task: sft\n" + "# padding\n" * 500_000)
    monkeypatch.setattr(yaml, "parse", never)  # refused before parsing: by its size, not by how long parsing takes
    monkeypatch.setattr(yaml, "compose", never)
    with pytest.raises(VerifilyError) as exc:
        cfgmod.load_config(p)
    assert "at most 1,048,576 bytes" in exc.value.render()


def test_bom_is_tolerated(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert cfgmod.load_config(p).model == "all-MiniLM-L6-v2"


def test_cli_validate_ok_and_json(cli):
    ok = cli("validate", str(REPO / "examples" / "train.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    js = cli("validate", "--json", str(REPO / "examples" / "train.yaml"))
    assert json.loads(js.stdout)["config"]["lora"]["r"] == 16


def test_cli_validate_errors_exit_2_without_traceback(cli_process, tmp_path):
    """Through the real entry point (a process): the exit code and stderr a shell sees."""
    cli = cli_process
    p = tmp_path / "bad.yaml"
    p.write_text(GOOD + "lorra: {}\n")
    res = cli("validate", str(p))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    assert f"{p}:8:1 $.lorra: unknown key `lorra`" in res.stderr
    js = cli("validate", "--json", str(p))
    assert js.returncode == 2
    body = json.loads(js.stdout)
    assert body["valid"] is False and body["problems"][0]["json_path"] == "$.lorra"
    assert body["problems"][0]["hint"] == "did you mean `lora`?"


def test_cli_help_and_validate_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from verifily_action.cli import main\n"
        f"rc = main(['validate', {str(REPO / 'examples' / 'train.yaml')!r}])\n"
        "main(['--help'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_cli_version(cli):
    from verifily_action import __version__

    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"verifily {__version__}"


def test_internal_errors_are_clean_without_debug(tmp_path, monkeypatch, capsys):
    from verifily_action import cli as climod

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(cfgmod, "load_config", boom)
    rc = climod.main(["validate", str(tmp_path / "x.yaml")])
    captured = capsys.readouterr()
    assert rc == 3
    assert "internal error: RuntimeError: kaput" in captured.err and "Traceback" not in captured.err
    rc = climod.main(["--debug", "validate", str(tmp_path / "x.yaml")])
    assert rc == 3 and "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--runs", "a,b", "--bogus"], "No such option: --bogus"),
        (["train", "--nope"], "No such option: --nope"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["eval"], "Missing option '--run'"),
    ],
)
def test_usage_errors_are_user_errors(args, message, capsys):
    """A mistyped option or command is the user's error (exit 2, the usage line and a --help hint), never a bug."""
    from verifily_action import cli as climod

    rc = climod.main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "--help" in err
    assert "internal error" not in err and "Traceback" not in err


def test_cli_turns_hugging_face_telemetry_off_unless_the_user_chose(monkeypatch, capsys):
    import os

    from verifily_action import cli as climod

    monkeypatch.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
    assert climod.main(["--version"]) == 0
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "0")
    assert climod.main(["--version"]) == 0
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "0"


def test_closed_stdout_pipe_exits_quietly(tmp_path):
    """`verifily validate bad.yaml | head` with JSON errors: the reader is gone before the error is printed."""
    bad = tmp_path / "train.yaml"
    bad.write_text("task: sft\n")
    env = {**os.environ, "VERIFILY_ERROR_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "verifily_action.cli", "validate", str(bad)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err, err


def test_dry_run_json_says_what_would_run(cli, tmp_path):
    cfg = tmp_path / "train.yaml"
    text = (REPO / "examples" / "train.yaml").read_text().replace("datasets_root: datasets", "")
    cfg.write_text(text + f"datasets_root: {REPO / 'examples' / 'datasets'}\neval_dataset: ds_demo@v2\n")
    r = cli("train", "--config", str(cfg), "--dry-run", "--json", "--output-dir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["ok"] and plan["dry_run"] and plan["task"] == "classification"
    assert (plan["dataset"], plan["eval_dataset"], plan["rows"], plan["steps"]) == (
        "ds_demo@v1",
        "ds_demo@v2",
        2000,
        63,
    )
    assert plan["cached"] is None and plan["run_dir"].startswith(str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    text = cli("train", "--config", str(cfg), "--dry-run").stdout
    assert "eval: ds_demo@v2, split eval" in text and "2000 rows" in text


def test_dry_run_of_a_broken_config_lists_every_problem(cli, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        "task: classification\nmodel: all-MiniLM-L6-v2\ndataset: d@v1\nlorra: {r: 4}\ntraining: {epochs: -1}\n"
    )
    r = cli("train", "--config", str(cfg), "--dry-run")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "train.yaml:4:1 $.lorra: unknown key `lorra`" in r.stderr and "train.yaml:5:12 $.training.epochs" in r.stderr
    r = cli("train", "--config", str(cfg), "--dry-run", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 2 and doc["ok"] is False and doc["exit_code"] == 2
    assert [(p["line"], p["json_path"]) for p in doc["problems"]] == [(4, "$.lorra"), (5, "$.training.epochs")]
