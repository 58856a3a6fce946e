"""Dynamic features: MD trajectories (:func:`extract_md`) and normal-mode analysis (:func:`extract_nma`).

Imported lazily so that using one family does not import the other's dependencies.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {"extract_md": "seqdance.features.md", "extract_nma": "seqdance.features.nma"}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
