"""MD features: :func:`extract_md` reads the frames of any input kind (:func:`open_frames`) and folds them into the
properties (:mod:`.properties`, :mod:`.interactions` on :mod:`.contact_geometry`, SASA by :mod:`.residue_sasa`
with the :mod:`.sasa` kernel or its :mod:`.sasa_torch` twin)."""

from __future__ import annotations

from seqdance.extras import require_extra
from seqdance.lazy import lazy_exports

# Every module of this package reads frames with MDTraj; importing one without it names the extra to install.
require_extra("md", "seqdance.features.md", ("mdtraj", "numba"))

_LAZY = {"extract_md": "seqdance.features.md.extract", "open_frames": "seqdance.features.md.frames"}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
