"""seqdance: protein language models that learn dynamics (SeqDance / ESMDance re-implementation)."""

from __future__ import annotations

__version__ = "0.1.0"

from seqdance.schema import PROPERTIES, PROPERTY_NAMES

__all__ = ["PROPERTIES", "PROPERTY_NAMES", "__version__", "load_model", "predict"]

#: Public names imported on first use (so ``import seqdance`` does not import torch): name -> module.
_LAZY = {"load_model": "seqdance.model.loading", "predict": "seqdance.inference.predict"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqdance' has no attribute {name!r}")
