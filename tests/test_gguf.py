"""`model:` naming a GGUF file or a folder holding one (train/gguf.py, train/models.py): the bad inputs, each one
clear error through the CLI with nothing left in the model cache. Converting a real GGUF (SmolLM2-135M-Instruct)
is tested in tests/real_llm."""

from __future__ import annotations

import pytest

from tests.builders import GENERATED, sft_rows, write_config, write_dataset

pytestmark = pytest.mark.unit


def _gguf(path, arch):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name("tiny")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def train_with(tmp_path, cli, monkeypatch):
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("VERIFILY_MODEL_CACHE", str(cache))
    write_dataset(tmp_path / "datasets", "sft", "v1", {"train": sft_rows(8), "eval": sft_rows(4, 1)}, task="sft",
                  **GENERATED)  # fmt: skip

    def run(model: str):
        cfg = write_config(tmp_path / "train.yaml", task="sft", model=model, dataset="sft@v1",
                           datasets_root=str(tmp_path / "datasets"), output_dir=str(tmp_path / "runs"))  # fmt: skip
        out = cli("train", "--config", str(cfg))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
        assert not cache.exists() or not any(cache.iterdir())  # no folder, no scratch left behind
        return out.stderr

    return run


def test_an_architecture_transformers_cannot_load_is_one_clear_error(tmp_path, train_with):
    err = train_with(str(_gguf(tmp_path / "rwkv.gguf", "rwkv7")))
    assert "transformers cannot load a GGUF of architecture 'rwkv7'" in err
    assert "llama" in err  # the hint lists what it can load


def test_a_file_that_is_not_gguf_is_refused(tmp_path, train_with):
    (tmp_path / "model.gguf").write_text("not a model")
    assert "model.gguf is not a readable GGUF file" in train_with(str(tmp_path / "model.gguf"))


def test_a_folder_with_two_gguf_files_asks_for_one(tmp_path, train_with):
    folder = tmp_path / "pkg"
    folder.mkdir()
    for name in ("a.Q4_1.gguf", "b.Q8_0.gguf"):
        _gguf(folder / name, "llama")
    err = train_with(str(folder))
    assert "holds 2 GGUF files: a.Q4_1.gguf, b.Q8_0.gguf" in err and "set `model:` to one of them" in err


def test_a_folder_without_config_or_gguf_is_still_not_a_model(tmp_path, train_with):
    (tmp_path / "empty").mkdir()
    assert "is not a Hugging Face model folder" in train_with(str(tmp_path / "empty"))
