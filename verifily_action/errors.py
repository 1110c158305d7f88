"""The one user-facing error type, and the exit codes the CLI and the Action use.

Exit codes (documented in README.md):
  0  success
  1  a gate failed (a `--fail-on` rule matched a regression)
  2  user error: bad config, bad data, bad arguments, missing files
  3  internal error: a bug in Verifily (rerun with --debug for the traceback)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_GATE = 1
EXIT_USER = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as shell tools report it
MAX_PROBLEMS_SHOWN = 50  # problems one error lists; the rest are counted ("… and N more problems")


@dataclass
class Problem:
    """One thing wrong with an input: what, where (file:line:col and/or a JSON path) and how to fix it."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    json_path: str | None = None
    hint: str | None = None

    def location(self) -> str:
        parts = []
        if self.file:
            loc = self.file
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            parts.append(loc)
        if self.json_path:
            parts.append(self.json_path)
        return " ".join(parts)

    def render(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "json_path": self.json_path,
            "hint": self.hint,
        }


@dataclass
class VerifilyError(Exception):
    """An error the user can act on. The CLI prints it without a traceback and exits with `exit_code`.

    `problems` carries every individual problem when several were found at once (config validation, data checks);
    `omitted` counts the problems found but not listed (a list is capped at MAX_PROBLEMS_SHOWN).
    """

    message: str
    hint: str | None = None
    problems: list[Problem] = field(default_factory=list)
    exit_code: int = EXIT_USER
    omitted: int = 0

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        lines.extend("  " + p.render().replace("\n", "\n  ") for p in self.problems)
        if self.omitted:
            lines.append(f"  … and {self.omitted:,} more problem{'s' * (self.omitted != 1)}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "error": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.omitted:
            out["omitted_problems"] = self.omitted
        return out


class GateFailure(VerifilyError):
    """A `--fail-on` rule matched: the comparison ran fine but the change regressed."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message, problems=problems or [], exit_code=EXIT_GATE)


def not_implemented(command: str, issue: str) -> VerifilyError:
    """The error for a command whose issue has not landed yet: never fake output."""
    return VerifilyError(
        f"`verifily {command}` is not implemented yet",
        hint=f"it arrives with the {issue} issue; nothing was run",
    )
