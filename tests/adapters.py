"""A run's LoRA adapter weights, read from its folder or from a server's run store, and how far two adapters are
apart: the resume, streaming, multi-process and runner tests compare a run with a straight one."""

from __future__ import annotations

from pathlib import Path

import requests

ADAPTER = "adapter/adapter_model.safetensors"


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / ADAPTER)


def served(url: str, token: str, root: str) -> dict:
    """The adapter of the run `root` in the server's run store (its listing, then the blob)."""
    from safetensors.torch import load

    auth = {"Authorization": f"Bearer {token}"}
    listing = requests.get(f"{url}/api/v1/runs/{root}", headers=auth, timeout=60)
    assert listing.status_code == 200, listing.text
    blob = requests.get(f"{url}/api/v1/blobs/{listing.json()['files'][ADAPTER]}", headers=auth, timeout=60)
    assert blob.status_code == 200, blob.text
    return load(blob.content)


def max_diff(a: dict, b: dict) -> float:
    """The largest absolute difference of any weight; both adapters hold the same tensors."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)
