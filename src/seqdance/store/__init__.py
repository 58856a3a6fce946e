"""The dynamics dataset store: target transforms, the HDF5 store (ours and the released layout), builder,
split by sequence identity and validation (DESIGN §5; docs/dataset.md)."""

from __future__ import annotations

from typing import Any

from seqdance.store.hdf5 import DynamicsStore, StoredProtein, StoreWriter
from seqdance.store.transforms import features_to_targets, targets_to_features

_LAZY = {
    "build_store": "seqdance.store.builder",
    "merge_stores": "seqdance.store.merge",
    "read_manifest": "seqdance.store.manifest",
    "check_store": "seqdance.store.check",
    "split_store": "seqdance.store.split",
    "cluster_sequences": "seqdance.store.split",
    "homology_hits": "seqdance.store.split",
}

__all__ = ["DynamicsStore", "StoreWriter", "StoredProtein", "features_to_targets", "targets_to_features", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqdance.store' has no attribute {name!r}")
