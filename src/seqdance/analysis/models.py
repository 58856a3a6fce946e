"""Models the analyses accept: SeqDance/ESMDance, a plain ESM2 masked LM, or a bare ESM2 encoder.

The analyses only need the ESM2 encoder (its last hidden state and attention maps), so one loader takes any of
the sources the other commands take; :func:`seqdance.inference.embeddings.encoder_of` finds the encoder in
whatever was loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from seqdance.inference.embeddings import encoder_of
from seqdance.model.config import ESM2_HUB_IDS

__all__ = ["describe_source", "encoder_of", "load_analysis_model"]


def _is_esm2_source(source: str) -> bool:
    """Whether a model source names a plain ESM2 checkpoint (facebook/esm2_* layout) rather than SeqDance/ESMDance."""
    path = Path(source).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            return False
        try:
            data = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return isinstance(data, dict) and "model_select" not in data and data.get("model_type") == "esm"
    if path.exists():
        return False
    return source in ESM2_HUB_IDS or source in ESM2_HUB_IDS.values() or source.startswith("facebook/esm2")


def load_analysis_model(
    source: str, *, model_select: str | None = None, device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> torch.nn.Module:
    """Load a SeqDance/ESMDance model (any source :func:`seqdance.model.load_model` takes) or a plain ESM2
    (a ``facebook/esm2_*`` hub id, a preset name such as ``35M``, or a local directory in that layout), its
    weights in ``dtype`` (default: as stored)."""
    from seqdance.model import load_esm2_masked_lm, load_model

    if _is_esm2_source(source):
        return load_esm2_masked_lm(source, device=device, dtype=dtype)
    return load_model(source, model_select=model_select, device=device, dtype=dtype)


def describe_source(source: str | os.PathLike[str]) -> str:
    """How reports name a model: a local path made absolute, a hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)
