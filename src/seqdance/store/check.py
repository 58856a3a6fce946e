"""Validate a store: shapes, per-property value ranges, masks, NaN/inf — a report naming each offending protein.

Every rule comes from the schema, by the property's output activation (what the model can produce is what the
target may hold) and transform:

* softplus targets (SASA, NMA fluctuations, cube-rooted interaction frequencies) are ≥ 0 — and ≤ 1 for
  interactions when the store's frequency mode is ``fraction``;
* sigmoid targets (RMSF / per-protein max) lie in (0, 1], and a max-normalised one reaches 1;
* softmax groups (DSSP classes, dihedral histograms) are ≥ 0 and sum to 1 per residue;
* signed-sigmoid targets (correlations) lie in [−1, 1], are symmetric with a unit diagonal.

A residue (or residue pair) may be masked: all channels of a property equal to MASK_VALUE there. Every special
token row/column (<cls>, <eos>, chain linkers) must be fully masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from seqdance import tokenizer
from seqdance.schema import (
    GROUP_KIND,
    MASK_VALUE,
    Property,
    kind_of_stored_width,
    properties_of_kind,
    stored_width,
)
from seqdance.store.hdf5 import PAIR_SUFFIX, RES_SUFFIX, DynamicsStore, from_modify_seq

SUM_TOLERANCE = 1e-3
RANGE_TOLERANCE = 1e-5
SYMMETRY_TOLERANCE = 1e-4
DIAGONAL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    name: str  # protein name ('' for store-level problems)
    check: str  # short id of the failed rule
    detail: str

    def __str__(self) -> str:
        who = f"{self.name}: " if self.name else ""
        return f"{who}[{self.check}] {self.detail}"


@dataclass
class CheckReport:
    path: str
    n_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def offending(self) -> list[str]:
        """Names of the proteins with at least one problem, in report order."""
        return list(dict.fromkeys(p.name for p in self.problems if p.name))

    def summary(self) -> str:
        if self.ok:
            return f"{self.path}: {self.n_checked} proteins checked, no problems"
        return (f"{self.path}: {self.n_checked} proteins checked, {len(self.problems)} problem(s) in "
                f"{len(self.offending)} protein(s)")


def _first(mask: np.ndarray, base: int = 1) -> str:
    """Position of the first True entry, 1-based for residues (``base=0`` for token indices)."""
    idx = tuple(int(v) + base for v in np.argwhere(mask)[0])
    return ", ".join(str(v) for v in idx)


def _check_residue_property(prop: Property, values: np.ndarray, name: str, out: list[Problem]) -> None:
    """``values``: (L, width) at residue positions; messages name the first offending residue (1-based)."""
    masked = (values == MASK_VALUE).all(axis=1)
    partial = (values == MASK_VALUE).any(axis=1) & ~masked
    if prop.activation == "softmax" and partial.any():
        out.append(Problem(name, "mask", f"{prop.name}: residue {_first(partial)} is partly masked"))
    masked |= partial  # reported once above, not again as a range or sum problem
    if masked.all():
        return
    live = np.where(masked[:, None], np.nan, values)

    def report(check: str, bad_rows: np.ndarray, text: str) -> None:
        if bad_rows.any():
            res = int(np.flatnonzero(bad_rows)[0])
            shown = values[res, 0] if prop.width == 1 else values[res].sum()
            out.append(Problem(name, check, f"{prop.name}: residue {res + 1} {text} (value {shown:.6g})"))

    with np.errstate(invalid="ignore"):
        if prop.activation == "softmax":
            report("range", (live < -RANGE_TOLERANCE).any(axis=1), "has a negative histogram value")
            report("softmax-sum", np.abs(live.sum(axis=1) - 1) > SUM_TOLERANCE, "does not sum to 1")
        elif prop.activation == "softplus":
            report("range", live[:, 0] < -RANGE_TOLERANCE, "is negative")
        elif prop.activation == "sigmoid":
            report("range", (live[:, 0] <= 0) | (live[:, 0] > 1 + RANGE_TOLERANCE), "is outside (0, 1]")
            peak = float(np.nanmax(live[:, 0]))
            if prop.transform == "max_normalise" and abs(peak - 1) > RANGE_TOLERANCE:
                out.append(Problem(name, "normalisation", f"{prop.name}: maximum is {peak:g}, not 1"))
        elif prop.activation == "signed_sigmoid":
            report("range", np.abs(live[:, 0]) > 1 + RANGE_TOLERANCE, "is outside [-1, 1]")


def _check_pair_property(prop: Property, values: np.ndarray, name: str, frequency: str | None, out: list[Problem]) -> None:
    """``values``: (L, L) at residue pairs."""
    if prop.activation == "signed_sigmoid":
        if (np.abs(values) > 1 + RANGE_TOLERANCE).any():
            bad = np.abs(values) > 1 + RANGE_TOLERANCE
            out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) is outside [-1, 1] "
                                              f"(value {values[bad][0]:.6g})"))
        diag = np.diagonal(values)
        if (np.abs(diag - 1) > DIAGONAL_TOLERANCE).any():
            out.append(Problem(name, "diagonal", f"{prop.name}: diagonal is not 1 at residue {_first(np.abs(diag - 1) > DIAGONAL_TOLERANCE)}"))
        asym = np.abs(values - values.T) > SYMMETRY_TOLERANCE
        if asym.any():
            out.append(Problem(name, "symmetry", f"{prop.name}: not symmetric at residue pair ({_first(asym)})"))
        return
    live = values != MASK_VALUE
    bad = live & (values < -RANGE_TOLERANCE)
    if bad.any():
        out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) is negative ({values[bad][0]:.6g})"))
    if prop.transform == "cube_root" and frequency == "fraction":
        bad = live & (values > 1 + RANGE_TOLERANCE)
        if bad.any():
            out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) has frequency "
                                              f"{values[bad][0]:.6g} > 1 in fraction mode"))
        asym = np.abs(values - values.T) > SYMMETRY_TOLERANCE
        if asym.any():
            out.append(Problem(name, "symmetry", f"{prop.name}: not symmetric at residue pair ({_first(asym)}) in fraction mode"))


def check_protein(
    name: str,
    sequence: str,
    group: str,
    residue: np.ndarray,
    pair: np.ndarray,
    *,
    frequency: str | None = None,
    length: int | None = None,
) -> list[Problem]:
    """All problems of one protein's stored targets (``sequence`` ``:``-joined or released ``modify_seq``)."""
    out: list[Problem] = []
    try:
        enc = tokenizer.encode(from_modify_seq(sequence), name)
    except ValueError as exc:
        return [Problem(name, "sequence", str(exc))]
    n_tokens, residue_index = int(enc.ids.shape[0]), enc.residue_index
    if length is not None and length != residue_index.shape[0]:
        out.append(Problem(name, "length", f"index says {length} residues, the sequence has {residue_index.shape[0]}"))
    try:
        kind = kind_of_stored_width("residue", residue.shape[-1] if residue.ndim == 2 else -1)
    except ValueError as exc:
        return [*out, Problem(name, "shape", f"residue dataset shape {residue.shape}: {exc}")]
    if group in GROUP_KIND and GROUP_KIND[group] != kind:
        out.append(Problem(name, "kind", f"source group {group!r} holds {GROUP_KIND[group]} targets, the datasets hold {kind}"))
    want_res = (n_tokens, stored_width("residue", kind))
    want_pair = (n_tokens, n_tokens, stored_width("pair", kind))
    if residue.shape != want_res or pair.shape != want_pair:
        out.append(Problem(
            name, "shape",
            f"datasets have shapes {residue.shape} and {pair.shape}; the sequence ({residue_index.shape[0]} residues, "
            f"{n_tokens} tokens) needs {want_res} and {want_pair}",
        ))
        return out
    for label, arr in (("residue", residue), ("pair", pair)):
        finite = np.isfinite(arr)
        if not finite.all():
            out.append(Problem(name, "nan", f"{label} dataset has {int((~finite).sum())} NaN/inf value(s), first at "
                                            f"token index ({_first(~finite, base=0)})"))
            return out
    special = np.ones(n_tokens, dtype=bool)
    special[residue_index] = False
    if (residue[special] != MASK_VALUE).any() or (pair[special] != MASK_VALUE).any() or (pair[:, special] != MASK_VALUE).any():
        out.append(Problem(name, "special-mask", f"special-token rows/columns are not all {MASK_VALUE:g}"))
    res = residue[residue_index]
    for prop in properties_of_kind(kind, "residue"):
        _check_residue_property(prop, res[:, prop.store_channels], name, out)
    block = pair[np.ix_(residue_index, residue_index)]
    for prop in properties_of_kind(kind, "pair"):
        _check_pair_property(prop, block[:, :, prop.store_channels.start], name, frequency, out)
    return out


def check_store(
    path: str | os.PathLike[str],
    *,
    names: Iterable[str] | None = None,
    index: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> CheckReport:
    """Check every protein of a store (or ``names``), plus index/dataset agreement."""
    report = CheckReport(str(path))
    with DynamicsStore.open(path, index=index) as store:
        idx = store.index
        frequency = store.metadata.get("frequency")
        fh = store._file
        keys = set(fh.keys())
        indexed = set(idx["name"])
        for key in sorted(keys):
            for suffix in (RES_SUFFIX, PAIR_SUFFIX):
                if key.endswith(suffix) and key[: -len(suffix)] not in indexed:
                    report.problems.append(Problem(key[: -len(suffix)], "index", f"dataset {key!r} has no index row"))
        wanted = list(idx["name"]) if names is None else list(names)
        iterator: Iterable[str] = wanted
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(wanted, desc="dataset check", unit="protein")
        for name in iterator:
            if name not in store:
                report.problems.append(Problem(name, "index", "not in the store's index"))
                continue
            row = store.row(name)
            rk, pk = store.dataset_names(name)
            if rk not in keys or pk not in keys:
                report.problems.append(Problem(name, "missing", f"dataset {rk if rk not in keys else pk!r} is missing"))
                continue
            residue, pair = store.read_arrays(name)
            length = int(row["length"]) if "length" in row else None
            report.problems.extend(check_protein(
                name, str(row["modify_seq"]), str(row["group"]), residue, pair, frequency=frequency, length=length,
            ))
            report.n_checked += 1
    return report
