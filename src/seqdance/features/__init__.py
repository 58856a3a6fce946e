"""Dynamic features: MD trajectories (:func:`extract_md`) and normal-mode analysis (:func:`extract_nma`).

The package follows the data flow: :mod:`.inputs` reads files (topologies, trajectories, mdCATH, ensembles,
coarse-grained traces, back-mapping, hydrogens, structures), :mod:`.md` and :mod:`.nma` compute the two feature
families, :mod:`.feature_files` writes and reads their ``.npz`` files, :mod:`.options` defines every option once
(:class:`MdOptions`, :class:`NmaOptions`) and :mod:`.results` what the extractors return.

Imported lazily so that using one family does not import the other's dependencies.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "extract_md": "seqdance.features.md.extract",
    "open_frames": "seqdance.features.md.frames",
    "extract_nma": "seqdance.features.nma.extract",
    "run_nma_batch": "seqdance.features.nma.batch",
    "MdOptions": "seqdance.features.options",
    "NmaOptions": "seqdance.features.options",
    "InputSpec": "seqdance.features.inputs.spec",
    "load_feature_file": "seqdance.features.feature_files",
    "save_md_features": "seqdance.features.feature_files",
    "save_nma_features": "seqdance.features.feature_files",
    "load_nma_features": "seqdance.features.feature_files",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
