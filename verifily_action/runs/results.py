"""Reading an evaluation's results (eval_results.json): the file is checked against schemas/eval_results.schema.json
when it is loaded, so every reader can rely on its required fields (confidence, resamples, min_slice_size, ...)
instead of guessing a default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from .files import read_json


def load_eval_results(path: Path) -> dict[str, Any]:
    """The eval results at `path`, validated; a VerifilyError names the file and the first problems."""
    from ..schemas import validator

    try:
        results = read_json(path)
    except FileNotFoundError as e:
        raise VerifilyError(f"{path} is missing", hint="evaluate the run: `verifily eval --run RUN`") from e
    except (OSError, ValueError) as e:
        raise VerifilyError(f"{path} cannot be read: {e}", hint="evaluate the run again") from e
    errors = sorted(validator("eval_results.schema.json").iter_errors(results), key=lambda e: list(e.absolute_path))
    if errors:
        where = [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors[:3]]
        raise VerifilyError(
            f"{path} is not valid eval results ({len(errors)} problem(s)): " + "; ".join(where),
            hint="evaluate the run again with this verifily version (`verifily eval --run RUN`)",
        )
    return dict(results)
