"""Models the analyses accept: SeqDance/ESMDance, a plain ESM2 masked LM, or a bare ESM2 encoder.

The analyses only need the ESM2 encoder (its last hidden state and attention maps), so one loader takes any of
the sources the other commands take, and one helper finds the encoder in whatever was loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from seqdance.errors import InputError
from seqdance.model.config import ESM2_HUB_IDS
from seqdance.model.encoder import Esm2Encoder


def encoder_of(model: torch.nn.Module, description: str = "model") -> Esm2Encoder:
    """The ESM2 encoder of a model (``esm2`` of a DynamicsModel, ``esm`` of an EsmMaskedLM, or the model itself)."""
    if isinstance(model, Esm2Encoder):
        return model
    for attr in ("esm2", "esm"):
        encoder = getattr(model, attr, None)
        if isinstance(encoder, Esm2Encoder):
            return encoder
    raise InputError(
        f"{description} has no attention maps or embeddings to analyse: it is not an ESM2-type model "
        f"({type(model).__name__} holds no ESM2 encoder)"
    )


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
    source: str, *, model_select: str | None = None, device: torch.device | str | None = None
) -> torch.nn.Module:
    """Load a SeqDance/ESMDance model (any source :func:`seqdance.model.load_model` takes) or a plain ESM2
    (a ``facebook/esm2_*`` hub id, a preset name such as ``35M``, or a local directory in that layout)."""
    from seqdance.model import load_esm2_masked_lm, load_model

    if _is_esm2_source(source):
        return load_esm2_masked_lm(source, device=device)
    return load_model(source, model_select=model_select, device=device)


def describe_source(source: str | os.PathLike[str]) -> str:
    """How reports name a model: a local path made absolute, a hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)
