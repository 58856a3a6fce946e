"""seqdance: protein language models that learn dynamics (SeqDance / ESMDance re-implementation)."""

from __future__ import annotations

__version__ = "0.1.0"

from seqdance.schema import PROPERTIES, PROPERTY_NAMES

__all__ = ["PROPERTIES", "PROPERTY_NAMES", "__version__"]
