"""Evaluation of a run: batched inference, task metrics, tag slices with bootstrap intervals, hard examples.

`metrics`, `bootstrap`, `slices` and `hard` are pure Python/numpy (no torch) so `compare` can reuse them;
`inference` and `runner` import torch and transformers inside their functions.
"""
