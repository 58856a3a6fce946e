"""How close each assay protein is to the proteins a model was trained on.

For every assay wild type, the highest sequence identity to any training sequence whose local alignment covers
at least ``coverage`` of both sequences, computed by the alignment code of the train/test split
(:func:`seqdance.store.split.homology_hits`: Smith-Waterman with BLOSUM62, identity = identical residues /
alignment columns; MMseqs2 when installed). A reader can then see whether a gain comes from proteins the model
saw (docs/design.md#training-overlap). No training sequence meeting the coverage gives NaN (``train_target``
empty).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.store.options import DEFAULT_COVERAGE

#: The column every table gets.
IDENTITY_COLUMN = "train_identity"


def read_training_sequences(source: str | os.PathLike[str]) -> tuple[list[str], list[str], str]:
    """Names and sequences of the training set, and a phrase saying what was read.

    ``source`` is a seqdance store (its ``train`` proteins when it has been split, else all of them) or a FASTA file
    of training sequences.
    """
    import h5py

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"training set not found: {path}")
    if h5py.is_hdf5(path):
        from seqdance.store.hdf5 import DynamicsStore, from_modify_seq

        with DynamicsStore.open(path) as store:
            index = store.index
        split = "label" in index.columns and (index["label"] == "train").any()
        if split:
            index = index[index["label"] == "train"]
        names = index["name"].astype(str).tolist()
        sequences = [from_modify_seq(s) for s in index["modify_seq"]]
        what = f"{len(names)} {'train-split' if split else ''} proteins of {path.name}".replace("  ", " ")
    else:
        from seqdance.io_utils import read_fasta

        records = read_fasta(path)
        names, sequences = [r.id for r in records], [r.sequence for r in records]
        what = f"{len(names)} sequences of {path.name}"
    if not names:
        raise InputError(f"{path}: no training sequences")
    return names, sequences, what


def training_identity(
    queries: Mapping[str, str],
    names: list[str],
    sequences: list[str],
    *,
    coverage: float = DEFAULT_COVERAGE,
    method: str = "auto",
    threads: int = 1,
) -> pd.DataFrame:
    """Per query (assay -> wild type): ``assay``, :data:`IDENTITY_COLUMN` (highest identity, NaN when no training
    sequence aligns over ``coverage`` of both), ``train_target`` and ``train_coverage`` (of the query)."""
    from seqdance.store.split import homology_hits

    hits = homology_hits(list(queries), list(queries.values()), names, sequences, identity=0.0, coverage=coverage,
                         method=method, threads=threads)
    return pd.DataFrame({
        "assay": hits["query"].astype(str),
        IDENTITY_COLUMN: hits["identity"].astype(np.float64),
        "train_target": hits["target"].astype(str),
        "train_coverage": hits["query_coverage"].astype(np.float64),
    })
