"""scneural: deep learning for single-cell analysis, native to scanpy, built on scvi-tools."""

from __future__ import annotations

from . import datasets, metrics, models, pl, tl

__version__ = "0.1.0"

__all__ = ["datasets", "metrics", "models", "pl", "tl"]
