"""Validate a store: shapes, per-property value ranges, masks, NaN/inf — a report naming each offending protein.

Every rule comes from the schema, by the property's output activation (what the model can produce is what the
target may hold) and transform:

* softplus targets (SASA, NMA fluctuations, cube-rooted interaction frequencies) are ≥ 0 — and ≤ 1 for
  interactions when the store's frequency mode is ``fraction``;
* sigmoid targets (RMSF / per-protein max) lie in (0, 1], and a max-normalised one reaches 1;
* softmax groups (DSSP classes, dihedral histograms) are ≥ 0 and sum to 1 per residue;
* signed-sigmoid targets (correlations) lie in [−1, 1], are symmetric with a unit diagonal.

NaN or infinite values are reported with the property and position; a protein whose data cannot be read (a
damaged chunk: Fletcher-32 checksum or decompression error) is reported and the check goes on with the others.

A residue (or residue pair) may be masked: all channels of a property equal to MASK_VALUE there. Every special
token row/column (<cls>, <eos>, chain linkers) must be fully masked.

**Missing properties** (docs/design.md#missing-properties). A protein whose metadata (provenance) lists
``missing_properties`` — an input that cannot give them, such as a Cα trace — must hold those properties fully masked,
and may hold masks nowhere else except where a dihedral is undefined (chi of Gly/Ala, phi/psi at chain ends): a masked
SASA, RMSF, DSSP or interaction entry, or a dihedral histogram masked at every residue although the sequence defines it,
is reported, as is a listed property that holds values. Proteins without that metadata (stores built before it
existed, the released dataset) are held to the earlier rule: masks anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np

from seqdance import tokenizer
from seqdance.errors import UnsafeFileError
from seqdance.schema import (
    GROUP_KIND,
    MASK_VALUE,
    Property,
    kind_of_stored_width,
    nonfinite_summary,
    properties_of_kind,
    stored_width,
)
from seqdance.store.hdf5 import PAIR_SUFFIX, RES_SUFFIX, DynamicsStore, from_modify_seq
from seqdance.wording import counted

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
    n_with_missing: int = 0  # proteins whose metadata lists missing properties (masked by design)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def offending(self) -> list[str]:
        """Names of the proteins with at least one problem, in report order."""
        return list(dict.fromkeys(p.name for p in self.problems if p.name))

    def summary(self) -> str:
        missing = (f"; {self.n_with_missing} with missing properties masked as their metadata lists"
                   if self.n_with_missing else "")
        if self.ok:
            return f"{self.path}: {counted(self.n_checked, 'protein')} checked, no problems{missing}"
        return (f"{self.path}: {counted(self.n_checked, 'protein')} checked, {counted(len(self.problems), 'problem')} "
                f"in {counted(len(self.offending), 'entry')}{missing}")


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


def _check_pair_property(prop: Property, values: np.ndarray, name: str, frequency: str | None,
                         out: list[Problem]) -> None:
    """``values``: (L, L) at residue pairs."""
    if prop.activation == "signed_sigmoid":
        if (np.abs(values) > 1 + RANGE_TOLERANCE).any():
            bad = np.abs(values) > 1 + RANGE_TOLERANCE
            out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) is outside [-1, 1] "
                                              f"(value {values[bad][0]:.6g})"))
        diag = np.diagonal(values)
        if (np.abs(diag - 1) > DIAGONAL_TOLERANCE).any():
            out.append(Problem(name, "diagonal", f"{prop.name}: diagonal is not 1 at residue "
                                                 f"{_first(np.abs(diag - 1) > DIAGONAL_TOLERANCE)}"))
        asym = np.abs(values - values.T) > SYMMETRY_TOLERANCE
        if asym.any():
            out.append(Problem(name, "symmetry", f"{prop.name}: not symmetric at residue pair ({_first(asym)})"))
        return
    live = values != MASK_VALUE
    bad = live & (values < -RANGE_TOLERANCE)
    if bad.any():
        out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) is negative "
                                          f"({values[bad][0]:.6g})"))
    if prop.transform == "cube_root" and frequency == "fraction":
        bad = live & (values > 1 + RANGE_TOLERANCE)
        if bad.any():
            out.append(Problem(name, "range", f"{prop.name}: residue pair ({_first(bad)}) has frequency "
                                              f"{values[bad][0]:.6g} > 1 in fraction mode"))
        asym = np.abs(values - values.T) > SYMMETRY_TOLERANCE
        if asym.any():
            out.append(Problem(name, "symmetry", f"{prop.name}: not symmetric at residue pair ({_first(asym)}) "
                                                 "in fraction mode"))


#: Residues without a chi1 angle (the dihedral histogram a protein may leave masked everywhere).
_NO_CHI1 = frozenset("GA")


def _defines_angle(prop: Property, sequence: str) -> bool:
    """Whether a ``:``-joined sequence has at least one residue that defines the dihedral ``prop`` (chi/phi/psi)."""
    chains = [c for c in sequence.split(tokenizer.CHAIN_SEPARATOR) if c]
    if prop.name == "chi":
        return any(letter not in _NO_CHI1 and letter != "X" for c in chains for letter in c)
    return any(len(c) >= 2 for c in chains)  # phi and psi: every residue but a chain's first / last


def _check_missing_rule(prop: Property, values: np.ndarray, listed: Collection[str], sequence: str, name: str,
                        out: list[Problem]) -> bool:
    """The missing-property rule for one property (``values``: (L, width) or (L, L)); True when the property is
    listed as missing (and so has nothing else to check)."""
    masked = values == MASK_VALUE
    if prop.name in listed:
        if not masked.all():
            where = (f"residue pair ({_first(~masked)})" if prop.level == "pair"
                     else f"residue {_first(~masked.all(axis=1))}")
            out.append(Problem(name, "missing-property", f"{prop.name}: listed as missing in the protein's metadata "
                                                         f"but holds a value at {where}"))
        return True
    if prop.activation == "signed_sigmoid":
        return False  # -1 is also a valid correlation: a full mask shows up as a diagonal problem
    unlisted = " but the protein's metadata does not list the property as missing"
    if prop.level == "pair":
        if masked.any():
            out.append(Problem(name, "mask", f"{prop.name}: residue pair ({_first(masked)}) is masked{unlisted}"))
        return False
    rows = masked.all(axis=1)
    if prop.name in ("chi", "phi", "psi"):  # undefined angles are masked per residue; all of them only if none exist
        if rows.all() and _defines_angle(prop, sequence):
            out.append(Problem(name, "mask", f"{prop.name}: masked at every residue{unlisted}"))
    elif rows.any():
        out.append(Problem(name, "mask", f"{prop.name}: residue {_first(rows)} is masked{unlisted}"))
    return False


def check_protein(
    name: str,
    sequence: str,
    group: str,
    residue: np.ndarray,
    pair: np.ndarray,
    *,
    frequency: str | None = None,
    length: int | None = None,
    missing: Collection[str] | None = None,
) -> list[Problem]:
    """All problems of one protein's stored targets (``sequence`` ``:``-joined or released ``modify_seq``).

    ``missing``: the schema names its metadata lists as missing (module doc); ``None`` when it has no such record.
    """
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
        out.append(Problem(name, "kind", f"source group {group!r} holds {GROUP_KIND[group]} targets, "
                                         f"the datasets hold {kind}"))
    want_res = (n_tokens, stored_width("residue", kind))
    want_pair = (n_tokens, n_tokens, stored_width("pair", kind))
    if residue.shape != want_res or pair.shape != want_pair:
        out.append(Problem(
            name, "shape",
            f"datasets have shapes {residue.shape} and {pair.shape}; the sequence ({residue_index.shape[0]} residues, "
            f"{n_tokens} tokens) needs {want_res} and {want_pair}",
        ))
        return out
    found = [t for t in (nonfinite_summary(residue, "residue", kind), nonfinite_summary(pair, "pair", kind)) if t]
    if found:
        out.append(Problem(name, "nan", "non-finite target values: " + "; ".join(found)))
        return out
    special = np.ones(n_tokens, dtype=bool)
    special[residue_index] = False
    if ((residue[special] != MASK_VALUE).any() or (pair[special] != MASK_VALUE).any()
            or (pair[:, special] != MASK_VALUE).any()):
        out.append(Problem(name, "special-mask", f"special-token rows/columns are not all {MASK_VALUE:g}"))
    if missing is not None:
        unknown = sorted(set(missing) - {p.name for p in properties_of_kind(kind)})
        if unknown:
            out.append(Problem(name, "metadata", f"missing_properties lists {unknown}, not {kind} properties"))
    plain = from_modify_seq(sequence)
    res = residue[residue_index]
    for prop in properties_of_kind(kind, "residue"):
        values = res[:, prop.store_channels]
        if missing is not None and _check_missing_rule(prop, values, missing, plain, name, out):
            continue
        _check_residue_property(prop, values, name, out)
    block = pair[np.ix_(residue_index, residue_index)]
    for prop in properties_of_kind(kind, "pair"):
        values = block[:, :, prop.store_channels.start]
        if missing is not None and _check_missing_rule(prop, values, missing, plain, name, out):
            continue
        _check_pair_property(prop, values, name, frequency, out)
    return out


def listed_missing(provenance: str | dict | None) -> list[str] | None:
    """``missing_properties`` of a protein's provenance (JSON text or dict); None when it records none."""
    if not provenance:
        return None
    record = json.loads(provenance) if isinstance(provenance, str) else provenance
    value = record.get("missing_properties") if isinstance(record, dict) else None
    return None if value is None else [str(v) for v in value]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
            try:
                residue, pair = store.read_arrays(name)
            except UnsafeFileError as exc:  # a virtual dataset: named, and the check goes on
                report.problems.append(Problem(name, "link", str(exc)))
                report.n_checked += 1
                continue
            except (OSError, ValueError) as exc:  # a damaged chunk (checksum or decompression error): go on
                report.problems.append(Problem(name, "read", f"its data cannot be read ({_one_line(exc)}): the "
                                                             "file is damaged here; rebuild this protein"))
                report.n_checked += 1
                continue
            length = int(row["length"]) if "length" in row else None
            try:
                missing = listed_missing(row.get("provenance"))
                report.n_with_missing += bool(missing)
            except (ValueError, TypeError) as exc:
                report.problems.append(Problem(name, "metadata", f"its provenance is not readable JSON ({exc})"))
                missing = None
            report.problems.extend(check_protein(
                name, str(row["modify_seq"]), str(row["group"]), residue, pair, frequency=frequency, length=length,
                missing=missing,
            ))
            report.n_checked += 1
    return report
