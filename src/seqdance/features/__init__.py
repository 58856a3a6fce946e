"""Dynamic features: MD trajectories (:func:`extract_md`) and normal-mode analysis (:func:`extract_nma`).

Imported lazily so that using one family does not import the other's dependencies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["extract_md", "extract_nma"]


def __getattr__(name: str) -> Any:
    if name == "extract_md":
        from seqdance.features.md import extract_md

        return extract_md
    if name == "extract_nma":
        from seqdance.features.nma import extract_nma

        return extract_nma
    raise AttributeError(f"module 'seqdance.features' has no attribute {name!r}")
