"""seqdance.model: the ESM2 encoder, the dynamics heads, loading and saving."""

from __future__ import annotations

from seqdance.model.config import ENCODER_PRESETS, ESM2_HUB_IDS, EncoderConfig, resolve_encoder_config
from seqdance.model.dynamics import MODEL_SELECTS, DynamicsModel, DynamicsOutput
from seqdance.model.encoder import Esm2Encoder, seqdance_init_
from seqdance.model.esm_lm import EsmMaskedLM
from seqdance.model.heads import activate
from seqdance.model.loading import (
    CheckpointError,
    ModelSourceError,
    build_esmdance_from_esm2,
    load_esm2_masked_lm,
    load_model,
)
from seqdance.model.predict import iter_predictions, predict
from seqdance.model.prediction import Prediction

__all__ = [
    "ENCODER_PRESETS",
    "ESM2_HUB_IDS",
    "MODEL_SELECTS",
    "CheckpointError",
    "DynamicsModel",
    "DynamicsOutput",
    "EncoderConfig",
    "Esm2Encoder",
    "EsmMaskedLM",
    "ModelSourceError",
    "Prediction",
    "activate",
    "build_esmdance_from_esm2",
    "iter_predictions",
    "load_esm2_masked_lm",
    "load_model",
    "predict",
    "resolve_encoder_config",
    "seqdance_init_",
]
