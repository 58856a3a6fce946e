"""Normal-mode features: elastic-network modes (:mod:`.modes`), :func:`extract_nma` for one structure
(:mod:`.extract`) and the resumable batch of ``features nma`` (:func:`run_nma_batch`, :mod:`.batch`)."""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "extract_nma": "seqdance.features.nma.extract",
    "nma_features": "seqdance.features.nma.modes",
    "NmaError": "seqdance.features.nma.modes",
    "run_nma_batch": "seqdance.features.nma.batch",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
