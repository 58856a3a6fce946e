"""seqdance.model: the ESM2 encoder, the dynamics heads, and their files (loading and saving).

Prediction from sequences is one layer up, in :mod:`seqdance.inference` (``seqdance.predict``). Public names
are imported on first use, so ``import seqdance.model.kinds`` (and the command-line help) needs no torch.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "ENCODER_PRESETS": "seqdance.model.config",
    "ESM2_HUB_IDS": "seqdance.model.config",
    "EncoderConfig": "seqdance.model.config",
    "resolve_encoder_config": "seqdance.model.config",
    "MODEL_SELECTS": "seqdance.model.kinds",
    "DynamicsModel": "seqdance.model.dynamics",
    "DynamicsOutput": "seqdance.model.dynamics",
    "Esm2Encoder": "seqdance.model.encoder",
    "seqdance_init_": "seqdance.model.encoder",
    "EsmMaskedLM": "seqdance.model.esm_lm",
    "activate": "seqdance.model.heads",
    "CheckpointError": "seqdance.model.files",
    "ModelSourceError": "seqdance.model.files",
    "build_esmdance_from_esm2": "seqdance.model.loading",
    "load_esm2_masked_lm": "seqdance.model.loading",
    "load_model": "seqdance.model.loading",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
