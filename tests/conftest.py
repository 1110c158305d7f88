"""Shared fixtures: every test runs offline with its caches in a temp folder.

More fixtures come from the plugin modules below, so no test module imports a fixture: `fake_github` and `gh`
(tests/github_fake.py), `env` for the Action's flow (tests/action_helpers.py), `shared_data` for the tests that need
../shared/data, with the notice at the end of a run that skipped them (tests/shared_data.py), `postgres` (a
throwaway PostgreSQL cluster per module, tests/pg_server.py), and `pytester`.
Paths (the repository, the demo datasets, the shared data) are in tests/paths.py; test data builders in
tests/builders.py.
"""

from __future__ import annotations

import pytest

from .cli_runner import run_cli, run_cli_process

pytest_plugins = ["pytester", "tests.github_fake", "tests.action_helpers", "tests.shared_data", "tests.pg_server"]


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


@pytest.fixture
def cli():
    """`cli("train", "--config", …)`: the CLI in process (run_cli)."""
    return run_cli


@pytest.fixture
def cli_process():
    """The CLI as a real subprocess (run_cli_process), for exit codes, pipes and start-up imports."""
    return run_cli_process
