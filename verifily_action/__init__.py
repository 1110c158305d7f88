"""Verifily Train: dataset-version-aware fine-tuning, sliced evaluation and run comparison."""

__version__ = "0.1.0"
