"""The dynamics dataset store: target transforms, the HDF5 store (ours and the released layout), builder,
split by sequence identity and validation (DESIGN §5)."""

from __future__ import annotations

from seqdance.store.hdf5 import DynamicsStore, StoredProtein, StoreWriter
from seqdance.store.transforms import features_to_targets, targets_to_features

__all__ = ["DynamicsStore", "StoreWriter", "StoredProtein", "features_to_targets", "targets_to_features"]
