"""A predicted per-residue property written onto a structure: B-factor column and a ChimeraX attribute file.

Each chain of the prediction is matched to one polymer chain of the structure (given, or the one its sequence
aligns to best) by a global alignment of the two sequences (gemmi's ``align_string_sequences``: the
structure may lack residues the prediction has, e.g. disordered termini, and may carry point mutations).
Every atom of an aligned residue gets the predicted value as its B-factor; atoms of residues with no aligned
prediction get ``missing`` (default 0). Aligned residues whose amino acids differ are reported.

Precision: the PDB format keeps two decimals of a B-factor in a six-character column (-99.99 to 999.99), mmCIF
(``.cif`` output) about six digits of a 32-bit float; the ChimeraX attribute file (``.defattr``, ``open OUT.defattr``
in ChimeraX, then e.g. ``color byattribute seqdance_rmsf_nor``) always holds the values at full precision. A
B-factor the output format cannot hold (beyond the PDB column, or not finite) is an error naming the largest value
and the limit: nothing is clamped or written as ``Inf``/``NaN``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.schema import RESIDUE_PROPERTIES

#: Properties with one value per residue (what a B-factor column can hold).
MAPPABLE_PROPERTIES: tuple[str, ...] = tuple(p.name for p in RESIDUE_PROPERTIES if p.width == 1)
#: Alignment scores: affine gaps as BLAST's (open 10 + 1 per residue against a match of 1), so unrelated
#: sequences do not align many identical residues by scattering gaps (gemmi's default gaps cost 1).
_MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND = 1, -1, -10, -1
#: An alignment places a chain when at least this share of its aligned pairs, and of the shorter sequence,
#: are identical residues.
MIN_IDENTITY = 0.5
#: Attribute name prefix in the ChimeraX file.
ATTRIBUTE_PREFIX = "seqdance_"
#: What the PDB B-factor column (columns 61-66, ``%6.2f``) holds with its two decimals.
PDB_BFACTOR_RANGE: tuple[float, float] = (-99.99, 999.99)
#: The largest magnitude an mmCIF B-factor keeps (gemmi stores it as a 32-bit float).
MMCIF_BFACTOR_LIMIT = float(np.finfo(np.float32).max)


@dataclass
class ChainMatch:
    """How one prediction chain was placed on one structure chain."""

    prediction_chain: int  # 1-based
    structure_chain: str
    aligned: int = 0  # residue pairs in the alignment
    identical: int = 0
    mismatches: list[str] = field(default_factory=list)  # "A:GLY45 (predicted A)"
    unmatched_structure: int = 0  # structure residues with no predicted residue
    unmatched_prediction: int = 0  # predicted residues absent from the structure

    def summary(self) -> str:
        text = (f"prediction chain {self.prediction_chain} -> structure chain {self.structure_chain}: "
                f"{self.aligned} residues aligned ({self.identical} identical)")
        if self.mismatches:
            shown = ", ".join(self.mismatches[:5]) + (f" and {len(self.mismatches) - 5} more"
                                                      if len(self.mismatches) > 5 else "")
            text += f"; {len(self.mismatches)} differ: {shown}"
        if self.unmatched_prediction:
            text += f"; {self.unmatched_prediction} predicted residues not in the structure"
        if self.unmatched_structure:
            text += f"; {self.unmatched_structure} structure residues without a prediction"
        return text


@dataclass
class MapResult:
    output: Path
    attribute_file: Path
    matches: list[ChainMatch]
    atoms_set: int
    residues_set: int
    unplaced: list[str] = field(default_factory=list)  # prediction chains no structure chain matched


def _one_letter(names: Sequence[str]) -> list[str]:
    import gemmi

    out = []
    for name in names:
        info = gemmi.find_tabulated_residue(name)
        code = info.one_letter_code.upper() if info is not None and info.one_letter_code.strip() else "X"
        out.append(code)
    return out


def align_residues(predicted: str, observed: Sequence[str]) -> list[tuple[int, int]]:
    """(predicted index, structure index) pairs of a global alignment of two one-letter sequences (the end gaps
    cost the same wherever a shorter sequence sits, so a domain still aligns inside a longer one)."""
    import gemmi

    scoring = gemmi.AlignmentScoring()
    scoring.match, scoring.mismatch, scoring.gapo, scoring.gape = _MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND
    result = gemmi.align_string_sequences(list(predicted), list(observed), [], scoring)
    pairs: list[tuple[int, int]] = []
    i = j = 0
    number = ""
    for ch in result.cigar_str():
        if ch.isdigit():
            number += ch
            continue
        count = int(number)
        number = ""
        if ch == "M":
            pairs.extend((i + k, j + k) for k in range(count))
            i += count
            j += count
        elif ch == "I":  # in the prediction only
            i += count
        elif ch == "D":  # in the structure only
            j += count
    return pairs


def _polymer_chains(structure) -> dict[str, list]:
    """Chain name -> its amino-acid residues (first model), in order."""
    import gemmi

    chains: dict[str, list] = {}
    for chain in structure[0]:
        residues = [r for r in chain if (info := gemmi.find_tabulated_residue(r.name)) is not None
                    and info.is_amino_acid()]
        if residues:
            chains.setdefault(chain.name, []).extend(residues)
    return chains


def _residue_spec(chain: str, residue) -> str:
    icode = residue.seqid.icode.strip()
    return f"/{chain}:{residue.seqid.num}{icode}"


def _read_chains(structure_path: str | os.PathLike[str]):
    """The structure, its amino-acid chains (first model) and their one-letter sequences."""
    import gemmi

    try:
        structure = gemmi.read_structure(str(structure_path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{structure_path}: cannot read the structure ({exc})") from exc
    available = _polymer_chains(structure)
    if not available:
        raise InputError(f"{structure_path}: no amino-acid chain in the first model")
    codes = {name: _one_letter([r.name for r in residues]) for name, residues in available.items()}
    return structure, available, codes


@dataclass
class _Placement:
    rows: np.ndarray  # indices of the prediction chain's residues in the concatenated sequence
    sequence: str
    match: ChainMatch
    pairs: list[tuple[int, int]]


def _place_chains(predicted: str, chain_lengths: Sequence[int], available: dict, codes: dict,
                  chains: Sequence[str] | None, structure_path) -> tuple[list[_Placement], list[str]]:
    """Each prediction chain on a structure chain (given, or the unused one with the most identical aligned
    residues); chains matching none are listed as unplaced, and none placed at all is an error."""
    pieces = np.split(np.arange(len(predicted)), np.cumsum(chain_lengths)[:-1])
    if chains is not None and len(chains) != len(pieces):
        raise InputError(f"{len(chains)} structure chain(s) given for a prediction of {len(pieces)} chain(s)")
    for name in chains or ():
        if name not in available:
            raise InputError(f"{structure_path}: no amino-acid chain {name!r} (chains: {', '.join(available)})")
    placements: list[_Placement] = []
    unplaced: list[str] = []
    used: set[str] = set()
    for k, rows in enumerate(pieces):
        seq = "".join(predicted[i] for i in rows)
        candidates = [chains[k]] if chains is not None else [name for name in available if name not in used]
        best: tuple[int, str, list[tuple[int, int]]] | None = None
        for name in candidates:
            pairs = align_residues(seq, codes[name])
            same = sum(seq[i] == codes[name][j] for i, j in pairs)
            if best is None or same > best[0]:
                best = (same, name, pairs)
        if best is None or best[0] < MIN_IDENTITY * max(len(best[2]), min(len(seq), len(available[best[1]]))):
            found = "no structure chain is left" if best is None else (
                f"the best, chain {best[1]} ({len(available[best[1]])} residues), has only {best[0]} identical "
                "aligned residues")
            if chains is not None:
                raise InputError(f"prediction chain {k + 1} ({len(seq)} residues) does not match structure chain "
                                 f"{chains[k]}: {found}; check the chain or that the structure is of this protein")
            unplaced.append(f"prediction chain {k + 1} ({len(seq)} residues): not placed, {found}")
            continue
        same, target, pairs = best
        used.add(target)
        residues = available[target]
        match = ChainMatch(k + 1, target, aligned=len(pairs), identical=same)
        for i, j in pairs:
            if seq[i] != codes[target][j]:
                residue = residues[j]
                match.mismatches.append(f"{target}:{residue.name}{residue.seqid.num}"
                                        f"{residue.seqid.icode.strip()} (predicted {seq[i]})")
        match.unmatched_prediction = len(seq) - len(pairs)
        match.unmatched_structure = len(residues) - len(pairs)
        placements.append(_Placement(rows, seq, match, pairs))
    if not placements:
        raise InputError(f"{structure_path}: no chain of the prediction matches a chain of the structure ("
                         + "; ".join(unplaced) + "); is the structure of this protein?")
    return placements, unplaced


def check_structure(sequence: str, structure_path: str | os.PathLike[str], *,
                    chains: Sequence[str] | None = None) -> list[ChainMatch]:
    """How the chains of ``sequence`` (joined by ':') place on a structure, without writing anything; raises the
    one-line error of :func:`map_property` when the structure does not match (so a command can stop before it
    computes)."""
    _, available, codes = _read_chains(structure_path)
    predicted = sequence.replace(":", "")
    lengths = [len(c) for c in sequence.split(":")]
    placements, _ = _place_chains(predicted, lengths, available, codes, chains, structure_path)
    return [p.match for p in placements]


def map_property(
    values: np.ndarray,
    sequence: str,
    chain_lengths: Sequence[int],
    structure_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    property_name: str,
    chains: Sequence[str] | None = None,
    missing: float = 0.0,
    scale: float = 1.0,
) -> MapResult:
    """Write ``values`` (one per predicted residue, chains concatenated) as B-factors of ``structure_path`` into
    ``output`` (.pdb or .cif by suffix), and ``output`` with suffix ``.defattr`` for ChimeraX.

    ``chains``: structure chain ids for the prediction's chains, in order (default: for each prediction chain
    the not-yet-used structure chain with the most identical aligned residues). B-factors are
    ``scale`` × value; the attribute file holds the unscaled values.
    """
    values = np.asarray(values, dtype=np.float64)
    predicted = sequence.replace(":", "")
    if values.shape != (len(predicted),):
        raise InputError(f"{len(values)} values for a prediction of {len(predicted)} residues")
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InputError(f"{property_name} is not finite at predicted residue {bad + 1}")
    out = Path(output)
    if out.suffix.lower() not in (".pdb", ".cif"):
        raise InputError(f"output must end in .pdb or .cif, got {out}")
    structure, available, codes = _read_chains(structure_path)
    placements, unplaced = _place_chains(predicted, chain_lengths, available, codes, chains, structure_path)
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                atom.b_iso = float(missing)
    attribute_lines: list[str] = []
    atoms_set = residues_set = 0
    written: list[float] = []  # the B-factors of the aligned residues
    for placement in placements:
        target = placement.match.structure_chain
        residues = available[target]
        for i, j in placement.pairs:
            residue = residues[j]
            value = float(values[placement.rows[i]])
            written.append(scale * value)
            for atom in residue:
                atom.b_iso = float(scale * value)
                atoms_set += 1
            residues_set += 1
            attribute_lines.append(f"\t{_residue_spec(target, residue)}\t{value:.9g}")
    check_bfactors(np.asarray(written, dtype=np.float64), out, property_name=property_name, scale=scale,
                   missing=missing if atoms_set < structure[0].count_atom_sites() else None)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".cif":
            structure.make_mmcif_document().write_file(str(tmp))
        else:
            structure.write_pdb(str(tmp))
    attribute_file = out.with_suffix(".defattr")
    header = [f"attribute: {ATTRIBUTE_PREFIX}{property_name}", "match mode: 1-to-1", "recipient: residues"]
    with atomic_path(attribute_file) as tmp:
        tmp.write_text("\n".join(header + attribute_lines) + "\n", encoding="utf-8")
    return MapResult(out, attribute_file, [p.match for p in placements], atoms_set, residues_set, unplaced)


def check_bfactors(values: np.ndarray, output: Path, *, property_name: str, scale: float,
                   missing: float | None) -> None:
    """Refuse B-factors the format of ``output`` cannot hold (PDB: -99.99 to 999.99 with two decimals; mmCIF: finite
    32-bit floats), naming the largest value and the limit. ``missing``: the value of atoms without a prediction,
    when some are written."""
    pdb = output.suffix.lower() == ".pdb"
    low, high = PDB_BFACTOR_RANGE if pdb else (-MMCIF_BFACTOR_LIMIT, MMCIF_BFACTOR_LIMIT)
    where = ("the PDB B-factor column (six characters, two decimals)" if pdb else "an mmCIF B-factor (a 32-bit float)")
    limits = f"which holds finite values from {low:g} to {high:g}"
    if missing is not None and not (math.isfinite(missing) and low <= round(missing, 2) <= high):
        raise InputError(f"{output}: the B-factor of residues without a prediction (missing = {missing:g}) does not "
                         f"fit {where}, {limits}")
    if not values.size:
        return
    what = f"{scale:g} × {property_name}" if scale != 1 else property_name
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(f"{output}: {what} gives a non-finite B-factor ({values[bad][0]:g}), which {where} cannot "
                         f"hold ({limits}); use a smaller scale")
    rounded = np.round(values, 2) if pdb else values
    if rounded.max() > high or rounded.min() < low:
        too_high = rounded.max() > high
        worst, bound = (float(values.max()), high) if too_high else (float(values.min()), low)
        raise InputError(f"{output}: {what} gives B-factors {'up' if too_high else 'down'} to {worst:.6g}, beyond "
                         f"{'the largest' if too_high else 'the lowest'} value of {where}, {bound:g}; use a smaller "
                         "scale" + (", a .cif output" if pdb else "") + " or the .defattr file (full precision)")


@dataclass
class DeltaStructure:
    """The files of one signed Δ on a structure: B-factors (mmCIF), ChimeraX attributes and command script, PyMOL
    script; ``limit`` is the symmetric colour limit ±max |Δ|."""

    structure: Path
    attribute_file: Path
    chimerax: Path
    pymol: Path
    limit: float
    result: MapResult


def write_delta_structure(
    values: np.ndarray,
    sequence: str,
    structure_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    property_name: str,
    title: str,
    chains: Sequence[str] | None = None,
) -> DeltaStructure:
    """A signed per-residue Δ (variant − wild type, NaN where a residue has no counterpart: written as 0) onto a
    structure of the wild type: ``output`` (.cif, B-factors at full precision) with :func:`map_property`, its
    ``.defattr``, a ChimeraX script ``.cxc`` and a PyMOL script ``.pml`` that colour it on a blue–white–red palette
    with symmetric limits ±max |Δ| (white = no change)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1e-6
    out = Path(output)
    result = map_property(np.nan_to_num(values, nan=0.0), sequence, [len(sequence.replace(":", ""))], structure_path,
                          out, property_name=property_name, chains=chains, missing=0.0)
    attribute = f"{ATTRIBUTE_PREFIX}{property_name}"
    name = "".join(ch if ch.isalnum() else "_" for ch in out.stem) or "variant"
    cxc = out.with_suffix(".cxc")
    with atomic_path(cxc) as tmp:
        tmp.write_text(
            f"# seqdance compare: {title}\n# blue = lower in the variant, red = higher, white = no change; "
            f"limits ±{limit:.6g}\nopen {out.name}\nopen {result.attribute_file.name}\n"
            f"color byattribute {attribute} palette {-limit:.6g},blue:0,white:{limit:.6g},red\n", encoding="utf-8")
    pml = out.with_suffix(".pml")
    with atomic_path(pml) as tmp:
        tmp.write_text(
            f"# seqdance compare: {title}\n# B-factor = Δ; blue = lower in the variant, red = higher, white = no "
            f"change; limits ±{limit:.6g}\nload {out.name}, {name}\nhide everything, {name}\n"
            f"show cartoon, {name}\nspectrum b, blue_white_red, {name}, minimum={-limit:.6g}, "
            f"maximum={limit:.6g}\n", encoding="utf-8")
    return DeltaStructure(out, result.attribute_file, cxc, pml, limit, result)
