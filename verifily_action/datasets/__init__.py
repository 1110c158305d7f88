"""Versioned datasets: manifests, `name@version` references, verified JSONL loading, tags and data checks.

The public API (the contract other stages code against):
`resolve`, `Manifest`, `FileEntry`, `load_split`, `check_data`, `DataReport`, `NONE_TAG`; also `diff(a, b, split=None)`
and `info(manifest)` (the dicts `dataset diff --json` / `dataset info --json` print), `load_manifest`, `datasets_root`.
"""

from __future__ import annotations

from ..tags import NONE_TAG
from .checks import DataReport, check_data
from .info import dataset_diff as diff
from .info import dataset_info as info
from .loading import load_split
from .manifest import FileEntry, Manifest, load_manifest
from .registry import datasets_root, resolve

__all__ = [
    "NONE_TAG",
    "DataReport",
    "FileEntry",
    "Manifest",
    "check_data",
    "datasets_root",
    "diff",
    "info",
    "load_manifest",
    "load_split",
    "resolve",
]
