"""seqdance.model: the ESM2 encoder, the dynamics heads, loading and saving."""

from __future__ import annotations

from seqdance.model.config import ENCODER_PRESETS, ESM2_HUB_IDS, EncoderConfig, resolve_encoder_config
from seqdance.model.dynamics import MODEL_SELECTS, DynamicsModel, DynamicsOutput
from seqdance.model.encoder import Esm2Encoder, seqdance_init_
from seqdance.model.heads import activate

__all__ = [
    "ENCODER_PRESETS",
    "ESM2_HUB_IDS",
    "MODEL_SELECTS",
    "DynamicsModel",
    "DynamicsOutput",
    "EncoderConfig",
    "Esm2Encoder",
    "activate",
    "resolve_encoder_config",
    "seqdance_init_",
]
