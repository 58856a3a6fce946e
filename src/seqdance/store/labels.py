"""Conformational properties stored per protein (docs/design.md#conformational-properties) as a label table for
``seqdance probe``.

The builder records, in each protein's provenance (``conformation``: one entry per chain), the properties of
:mod:`seqdance.features.conformation`: from the trajectory frames for MD entries, from the single structure for
NMA entries (``n_frames`` = 1). The released layout is untouched: the values live in the index's provenance
JSON, beside the input checksums.

The table has one row per chain: single-chain proteins keep their name, chains of multi-chain entries are named
``NAME_chainK`` (1-based) and carry their own sequence. Columns: ``name``, ``sequence``, the properties, ``info_*``
columns (protein, chain, source, group, residues, frames and, with ν, the Flory fit's R² and fitted separations)
that ``seqdance probe`` carries along without probing them and, on request, a ``split_store`` column holding the
store's train/test labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from seqdance import tokenizer
from seqdance.errors import InputError
from seqdance.features.conformation import FIT_QUALITY_NAMES, PROPERTY_NAMES
from seqdance.store.hdf5 import DynamicsStore, from_modify_seq

SPLIT_COLUMN = "split_store"


def conformation_table(
    store: DynamicsStore,
    *,
    split: str | None = None,
    groups: Sequence[str] | None = None,
    properties: Sequence[str] | None = None,
    store_split: bool = False,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """(table, counts): one row per chain with every selected property; counts say what was left out and why.

    Rows missing a selected property (e.g. ν of a chain too short for the fit) are dropped and counted;
    proteins built before the store recorded conformational properties are counted as ``not_recorded``.
    ``store_split`` adds the ``split_store`` column (the probe then uses the store's split instead of making
    its own clustered splits); it needs a store whose selected proteins are labelled train and test.
    """
    chosen = list(properties or PROPERTY_NAMES)
    unknown = [p for p in chosen if p not in PROPERTY_NAMES]
    if unknown:
        raise InputError(f"unknown conformational propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                         f"known: {', '.join(PROPERTY_NAMES)}")
    index = store.index
    if split is not None:
        index = index[index["label"] == split]
        if index.empty:
            raise InputError(f"{store.path}: split {split!r} has no proteins")
    if groups:
        index = index[index["group"].isin(list(groups))]
    counts = {"proteins": 0, "chains": 0, "not_recorded": 0, "incomplete_chains": 0}
    rows: list[dict[str, object]] = []
    for name, modify_seq, source, group, label in zip(index["name"], index["modify_seq"], index["source"],
                                                      index["group"], index["label"]):
        records = store.provenance(name).get("conformation")
        if not records:
            counts["not_recorded"] += 1
            continue
        chains = tokenizer.split_chains(from_modify_seq(str(modify_seq)))
        if len(chains) != len(records):
            raise InputError(f"{store.path}: protein {name!r} has {len(chains)} chains but {len(records)} "
                             "conformation records")
        counts["proteins"] += 1
        for k, (chain, record) in enumerate(zip(chains, records)):
            values = {p: record.get(p) for p in chosen}
            if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in values.values()):
                counts["incomplete_chains"] += 1
                continue
            counts["chains"] += 1
            rows.append({
                "name": name if len(chains) == 1 else f"{name}_chain{k + 1}", "sequence": chain, **values,
                SPLIT_COLUMN: str(label), "info_protein": name, "info_chain": k + 1, "info_source": source,
                "info_group": group, "info_n_residues": int(record.get("n_residues", len(chain))),
                "info_n_frames": int(record.get("n_frames", 0)),
                **{f"info_{q}": record.get(q) for q in FIT_QUALITY_NAMES},
            })
    fit_quality = [f"info_{q}" for q in FIT_QUALITY_NAMES] if "nu" in chosen else []
    columns = ["name", "sequence", *chosen, SPLIT_COLUMN, "info_protein", "info_chain", "info_source", "info_group",
               "info_n_residues", "info_n_frames", *fit_quality]
    table = pd.DataFrame(rows, columns=columns)
    for column in fit_quality[1:]:  # the fitted separations, integers (absent from records before they were kept)
        table[column] = table[column].astype("Int64")
    if store_split:
        labels = set(table[SPLIT_COLUMN])
        if not labels <= {"train", "test"} or len(labels) < 2:
            raise InputError(f"{store.path}: the selected proteins are labelled "
                             f"{', '.join(sorted(labels)) or 'nothing'}; "
                             "a split column needs train and test (run 'seqdance dataset split' first)")
    else:
        table = table.drop(columns=[SPLIT_COLUMN])
    return table, counts
