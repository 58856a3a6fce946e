"""The small real store built from ../shared/data: all three source groups, valid values, a split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqdance import tokenizer
from seqdance.schema import GROUP_KIND, MASK_VALUE, PROPERTY_BY_NAME
from seqdance.store import DynamicsStore
from seqdance.store.check import check_store
from seqdance.store.hdf5 import index_csv_path


def test_small_real_store_is_complete_valid_and_split(small_real_store) -> None:
    store = DynamicsStore.open(small_real_store)
    index = store.index
    assert set(index["group"]) == {"md", "idr", "nma"}
    assert {"ATLAS", "mdCATH", "proteinflow_pdb"} <= set(index["source"])
    assert set(index["label"]) == {"train", "test"}
    assert store.metadata["frequency"] == "reference"
    assert set(store.metadata["split"]["parameters"]) >= {"identity", "coverage", "seed", "method"}
    report = check_store(small_real_store)
    assert report.ok, [str(p) for p in report.problems]
    assert report.n_checked == len(index)
    for row in index.itertuples():
        protein = store.read(row.name)
        assert protein.kind == GROUP_KIND[row.group]
        n_tokens = tokenizer.encode(protein.sequence).ids.shape[0]
        assert protein.residue.shape[0] == n_tokens == protein.pair.shape[0]
        assert protein.provenance["spec"]["kind"] == protein.kind
        assert all(len(f["sha256"]) == 64 for f in protein.provenance["inputs"])
    # MD targets: RMSF normalised to max 1; frame counts of the strided trajectories recorded
    md = store.read("mdcath_2hbaA00")
    rmsf = md.residue[1:-1, PROPERTY_BY_NAME["rmsf_nor"].start]
    assert rmsf.max() == np.float32(1.0) and rmsf.min() > 0
    assert md.provenance["n_frames"] == 20 and md.provenance["frequency"] == "reference"
    assert store.read("adk_psf_dcd").provenance["n_frames"] == 10
    assert store.read("neopetrosiamide_nmr").provenance["n_frames"] == 24  # every model of the NMR ensemble
    assert (md.residue[0] == MASK_VALUE).all() and (md.residue[-1] == MASK_VALUE).all()
    # the released-style CSV beside the store agrees with the internal index
    csv = pd.read_csv(index_csv_path(small_real_store))
    assert list(csv.columns) == ["name", "modify_seq", "source", "label"]
    assert csv["label"].tolist() == index["label"].tolist()
    store.close()
