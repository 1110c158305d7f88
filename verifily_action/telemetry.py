"""No telemetry, said in one place: the Hugging Face libraries report usage on hub downloads unless told not to
(huggingface_hub `constants.py` reads HF_HUB_DISABLE_TELEMETRY when it is imported). Both entry points, the CLI
(`cli._main`) and the Action (`action.flow.main`), call `turn_off()` before anything imports those libraries. A
user's explicit setting wins; experiment trackers run only when the config's top-level `report_to` names one.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

OFF = {"HF_HUB_DISABLE_TELEMETRY": "1"}


def turn_off(env: MutableMapping[str, str] | None = None) -> None:
    """Set each variable of OFF in `env` (default: the process environment) unless it is set already."""
    target = os.environ if env is None else env
    for name, value in OFF.items():
        target.setdefault(name, value)
