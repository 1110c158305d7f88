"""Shared fixtures: every test runs offline with its caches in a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline_and_isolated(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("VERIFILY_CACHE", str(cache / "verifily"))  # base-model file-hash cache
    monkeypatch.delenv("VERIFILY_DEBUG", raising=False)
    monkeypatch.delenv("VERIFILY_DATASETS", raising=False)


def run_cli(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the real `verifily` console entry point in a subprocess; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "verifily_action.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
