"""The commands README.md and demo.sh document exist: every `verifily <command> [--option ...]` they show is checked
against the real CLI's `--help`, so a renamed command or option cannot leave the docs stale."""

from __future__ import annotations

import re
import shlex
from functools import cache

import pytest

from .cli_runner import run_cli_process
from .paths import REPO

pytestmark = pytest.mark.unit

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", ""}
# How the docs call the CLI: the console script, a venv's copy, the demo's `$VERIFILY`, or the image (`verifily:cpu`).
CLI_TOKEN = re.compile(r"^(?:.*/)?verifily(?::[\w.-]+)?$|^\$V$|^\$\{?VERIFILY\}?$")
ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<"}
# commands with subcommands (`server` runs itself, so its options are its own)
GROUPS = {"dataset", "jobs", "keys", "token"}


def _shell_lines(text: str, prompt_only: bool) -> list[str]:
    """Command lines of a shell text, continuation lines joined. In console blocks only `$ ` lines are commands
    (the rest is output)."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not pending:
            if prompt_only:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            line = line.strip()
            if not line or line.startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def invocations(lines: list[str]) -> list[tuple[tuple[str, ...], list[str], str]]:
    """[(command path, options, source line)] of every CLI call in `lines`."""
    found = []
    for line in lines:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, tok in enumerate(tokens):
            if not CLI_TOKEN.match(tok) or (i and tokens[i - 1] in ("-t", "--tag")):  # `docker build -t verifily:cpu`
                continue
            rest: list[str] = []
            for t in tokens[i + 1 :]:
                if t in ENDS or CLI_TOKEN.match(t):
                    break
                rest.append(t)
            options = [t.split("=", 1)[0] for t in rest if t.startswith("-") and t != "-"]
            words = [t for t in rest if not t.startswith("-")]
            if not words or words[0].startswith(("$", "{")):
                command: tuple[str, ...] = ()
            elif words[0] in GROUPS and len(words) > 1:
                command = (words[0], words[1])
            else:
                command = (words[0],)
            found.append((command, options, line))
    return found


def readme_invocations():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    calls = []
    for lang, body in FENCE.findall(text):
        if lang in SHELL_LANGS:
            calls += invocations(_shell_lines(body, prompt_only=lang == "console"))
    return calls


def demo_invocations():
    lines = _shell_lines((REPO / "demo.sh").read_text(encoding="utf-8"), prompt_only=False)
    # `v ARGS` is the demo's wrapper that prints the command, then runs `$VERIFILY ARGS`
    return invocations([f"verifily {line[2:]}" if line.startswith("v ") else line for line in lines])


@cache
def help_text(command: tuple[str, ...]) -> str:
    proc = run_cli_process(*command, "--help", timeout=120)
    assert proc.returncode == 0, f"`verifily {' '.join(command)} --help` failed: {proc.stderr}"
    return proc.stdout


def _has_option(help_out: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_out) is not None


def test_the_docs_show_the_main_commands():
    commands = {c[0] for c, _, _ in readme_invocations() if c}
    for expected in ("train", "eval", "compare", "reproduce", "validate"):
        assert expected in commands, f"README.md shows no `verifily {expected}` command"
    assert {c[0] for c, _, _ in demo_invocations() if c} >= {"train", "eval", "compare", "reproduce"}


@pytest.mark.parametrize("source", ["README.md", "demo.sh"])
def test_documented_commands_and_options_exist(source):
    calls = readme_invocations() if source == "README.md" else demo_invocations()
    assert calls, f"no verifily commands found in {source}"
    top = help_text(())
    missing = []
    for command, options, line in calls:
        if command and command[0] not in top.split("Commands:")[-1]:
            missing.append(f"command `{command[0]}` in: {line}")
            continue
        text = help_text(command)
        if len(command) > 1 and command[1] not in help_text(command[:1]):
            missing.append(f"command `{' '.join(command)}` in: {line}")
        for opt in options:
            if not _has_option(text, opt) and not (opt in ("--version", "--debug") and _has_option(top, opt)):
                missing.append(f"option `{opt}` of `verifily {' '.join(command)}` in: {line}")
    assert not missing, "\n".join(missing)


def test_parser_finds_options_and_stops_at_pipes():
    calls = invocations(
        [
            "verifily compare --runs a,b --slice-by source --chart out.png | head",
            "docker run --rm -v x:/y verifily:cpu validate train.yaml",
            "$V dataset diff ds@v1 ds@v2 --json",
            ".venv/bin/verifily --version",
            "docker build -t verifily:cuda .",
        ]
    )
    assert len(calls) == 4
    assert calls[0][:2] == (("compare",), ["--runs", "--slice-by", "--chart"])
    assert calls[1][:2] == (("validate",), [])
    assert calls[2][:2] == (("dataset", "diff"), ["--json"])
    assert calls[3][:2] == ((), ["--version"])
    assert not _has_option("  --runs-x  text", "--runs")
