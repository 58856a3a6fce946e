"""Loading and saving SeqDance/ESMDance models and ESM2 weights: the functional API.

Each function is a thin name for a class method (:meth:`DynamicsModel.from_pretrained`,
:meth:`DynamicsModel.from_esm2`, :meth:`EsmMaskedLM.from_pretrained`, ``save_pretrained``); the file formats,
hub access and strict key checking live in :mod:`seqdance.model.files`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from seqdance.model.config import EncoderConfig
from seqdance.model.dynamics import DynamicsModel
from seqdance.model.esm_lm import EsmMaskedLM
from seqdance.model.files import CheckpointError, ModelSourceError, read_checkpoint, read_state_dict
from seqdance.model.kinds import DEFAULT_ESM2_SOURCE, DEFAULT_MODEL_SOURCE

__all__ = [
    "DEFAULT_ESM2_SOURCE",
    "DEFAULT_MODEL_SOURCE",
    "CheckpointError",
    "ModelSourceError",
    "build_esmdance_from_esm2",
    "load_esm2_masked_lm",
    "load_model",
    "read_checkpoint",
    "read_state_dict",
    "save_dynamics_model",
    "save_esm2_masked_lm",
]


def load_model(
    source: str | os.PathLike[str] = DEFAULT_MODEL_SOURCE,
    *,
    model_select: str | None = None,
    encoder: str | Mapping[str, Any] | EncoderConfig | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> DynamicsModel:
    """Load a SeqDance/ESMDance model in eval mode: see :meth:`DynamicsModel.from_pretrained`."""
    return DynamicsModel.from_pretrained(
        source, model_select=model_select, encoder=encoder, device=device, dtype=dtype, revision=revision
    )


def build_esmdance_from_esm2(
    source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
    *,
    dropout: float = 0.1,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> DynamicsModel:
    """ESMDance for training (frozen pretrained ESM2, fresh heads): see :meth:`DynamicsModel.from_esm2`."""
    return DynamicsModel.from_esm2(source, dropout=dropout, device=device, dtype=dtype, revision=revision)


def load_esm2_masked_lm(
    source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> EsmMaskedLM:
    """ESM2 with its language-model head: see :meth:`EsmMaskedLM.from_pretrained`."""
    return EsmMaskedLM.from_pretrained(source, device=device, dtype=dtype, revision=revision)


def save_dynamics_model(model: DynamicsModel, directory: str | os.PathLike[str]) -> None:
    """Write a model in the released layout: see :meth:`DynamicsModel.save_pretrained`."""
    model.save_pretrained(directory)


def save_esm2_masked_lm(model: EsmMaskedLM, directory: str | os.PathLike[str]) -> None:
    """Write the ``facebook/esm2_*`` layout: see :meth:`EsmMaskedLM.save_pretrained`."""
    model.save_pretrained(directory)
