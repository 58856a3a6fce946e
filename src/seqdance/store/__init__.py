"""The dynamics dataset store: target transforms, the HDF5 store (ours and the released layout), builder,
split by sequence identity and validation (docs/design.md#dataset-layout; docs/dataset.md).

Public names are imported on first use, so the command line's choices (:mod:`seqdance.store.options`) load
neither h5py nor pandas.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "DynamicsStore": "seqdance.store.hdf5",
    "StoreWriter": "seqdance.store.hdf5",
    "StoredProtein": "seqdance.store.hdf5",
    "features_to_targets": "seqdance.store.transforms",
    "targets_to_features": "seqdance.store.transforms",
    "build_store": "seqdance.store.builder",
    "merge_stores": "seqdance.store.merge",
    "read_manifest": "seqdance.store.manifest",
    "check_store": "seqdance.store.check",
    "split_store": "seqdance.store.split",
    "cluster_sequences": "seqdance.store.split",
    "homology_hits": "seqdance.store.split",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
