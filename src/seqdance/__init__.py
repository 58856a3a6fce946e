"""seqdance: protein language models that learn dynamics (SeqDance / ESMDance re-implementation)."""

from __future__ import annotations

__version__ = "0.1.0"

from seqdance.lazy import lazy_exports
from seqdance.schema import PROPERTIES, PROPERTY_NAMES

#: Public names imported on first use (so ``import seqdance`` does not import torch): name -> module.
_LAZY = {
    "load_model": "seqdance.finetuning.files",  # fine-tuned model folders, then everything seqdance.model reads
    "predict": "seqdance.inference.predict",
    "compare": "seqdance.scoring.compare",  # how each variant changes the predicted dynamics
    "finetune": "seqdance.finetuning.run",
}

_lazy_names, __getattr__ = lazy_exports(__name__, _LAZY)
__all__ = ["PROPERTIES", "PROPERTY_NAMES", "__version__", *_lazy_names]
