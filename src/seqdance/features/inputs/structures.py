"""Read the Cα atoms of the protein residues of a structure file (PDB or mmCIF, plain or gzipped).

Parsing uses gemmi: a small, fast (C++), actively maintained library that reads PDB, mmCIF and mmJSON, plain
or gzipped, with the alternate-location, model and residue-classification handling this module needs. MDTraj
reads no mmCIF and Biopython is several times slower, so gemmi does the file work and this module only
selects atoms.

Rules (docs/design.md#nma-features):
- one model (``model``, 0-based); all chains in file order, or the chains named in ``chains``;
- alternate locations: the first conformer in the file is kept (usually altloc ``A``, as ProDy does);
- protein residues are amino acids of gemmi's residue table (standard, modified such as MSE/SEP, D-amino
  acids), the common force-field names (HSD, HIE, CYX, ...) and unknown residues in ATOM records that have
  N, CA and C atoms; water, ions, ligands and nucleic acids are ignored;
- a protein residue without a Cα atom is skipped and reported in :attr:`CalphaStructure.skipped`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdance.errors import InputError
from seqdance.extras import require_extra

#: File endings recognised as structure files when a directory is given to the CLI.
STRUCTURE_SUFFIXES: tuple[str, ...] = (".pdb", ".ent", ".cif", ".mmcif", ".pdbx", ".json")

#: Force-field residue names (CHARMM, AMBER, GROMACS) that gemmi's table does not know, mapped to one letter.
FORCE_FIELD_RESIDUES: dict[str, str] = {
    "HSD": "H", "HSE": "H", "HSP": "H", "HID": "H", "HIE": "H", "HIP": "H", "HIH": "H", "HISD": "H",
    "HISE": "H", "HISH": "H", "HISA": "H", "HISB": "H",
    "CYX": "C", "CYM": "C", "CYS2": "C", "CYN": "C",
    "ASH": "D", "ASPH": "D", "GLH": "E", "GLUH": "E", "LYN": "K", "LSN": "K", "LYSH": "K", "ARN": "R",
    "NALA": "A", "CALA": "A",
}


def residue_id_dtype(chain_width: int = 4) -> np.dtype:
    """Structured dtype of residue identifiers: chain id, residue number (resSeq) and insertion code."""
    return np.dtype([("chain", f"U{max(1, chain_width)}"), ("resseq", "i4"), ("icode", "U1")])


@dataclass(frozen=True)
class SkippedResidue:
    """A protein residue left out of the Cα model, and why."""

    chain: str
    resseq: int
    icode: str
    resname: str
    reason: str

    def __str__(self) -> str:
        return f"{self.chain}:{self.resname}{self.resseq}{self.icode.strip()} ({self.reason})"


@dataclass(frozen=True)
class CalphaStructure:
    """Cα coordinates (Å) and residue bookkeeping of one model of a structure."""

    source: str
    coords: np.ndarray  # (N, 3) float64, Å
    residue_ids: np.ndarray  # (N,) structured, residue_id_dtype()
    resnames: tuple[str, ...]
    chain_ids: tuple[str, ...]  # selected chains that have protein residues, in file order
    chain_lengths: tuple[int, ...]
    sequences: tuple[str, ...]  # one-letter sequence per chain
    skipped: tuple[SkippedResidue, ...] = field(default=())

    @property
    def n_residues(self) -> int:
        return int(self.coords.shape[0])

    @property
    def sequence(self) -> str:
        """One-letter sequence, chains joined by ``:``."""
        return ":".join(self.sequences)


def _one_letter(resname: str, info: object | None) -> str:
    if resname in FORCE_FIELD_RESIDUES:
        return FORCE_FIELD_RESIDUES[resname]
    if info is not None:
        code = info.one_letter_code.strip().upper()  # lower case marks a modified residue -> parent letter
        if code.isalpha() and len(code) == 1:
            return code
    return "X"


def _is_protein_residue(residue: object, info: object | None) -> bool:
    if info is not None and info.is_amino_acid():
        return True
    if residue.name in FORCE_FIELD_RESIDUES:
        return True
    if info is None and residue.het_flag == "A":
        names = {atom.name for atom in residue}
        return {"N", "CA", "C"} <= names
    return False


def _normalise_chains(chains: str | Iterable[str] | None) -> list[str] | None:
    if chains is None:
        return None
    if isinstance(chains, str):
        chains = chains.split(",")
    wanted = [c.strip() for c in chains if c.strip()]
    if not wanted:
        raise InputError("empty chain selection; give chain ids such as 'A' or 'A,B', or None for all chains")
    return list(dict.fromkeys(wanted))


def _check_unique_residues(model: object, path: Path, gemmi: object) -> None:
    """Raise naming chain and residue when a chain numbers two protein residues alike (without alternate
    locations telling them apart): gemmi would merge them and one residue would silently disappear."""
    for chain in model:
        seen: dict[tuple[int, str], str] = {}
        for residue in chain:
            if not _is_protein_residue(residue, gemmi.find_tabulated_residue(residue.name)):
                continue
            key = (residue.seqid.num, residue.seqid.icode.strip())
            label = f"{residue.name}{key[0]}{key[1]}"
            alternate = any(atom.has_altloc() for atom in residue)
            plain_ca = sum(1 for atom in residue if atom.name == "CA" and not atom.has_altloc())
            if plain_ca > 1 or (key in seen and not alternate):
                first = seen.get(key, label)
                raise InputError(
                    f"{path}: chain {chain.name} has residue number {key[0]}{key[1]} twice ({first} and {label}); "
                    "one would be silently dropped: renumber the residues (or give insertion codes)"
                )
            seen[key] = label


def read_calpha_structure(
    path: str | os.PathLike[str], *, chains: str | Sequence[str] | None = None, model: int = 0
) -> CalphaStructure:
    """Read the Cα atoms of the protein residues of one model of a PDB/mmCIF file (``.gz`` allowed).

    ``chains``: chain ids (a list or a comma-separated string; author chain ids for mmCIF) or None for all.
    Raises FileNotFoundError for a missing file and ValueError naming the file for unreadable input, a
    missing model or chain, or a structure without protein Cα atoms.
    """
    require_extra("nma", "reading a structure", ("gemmi",))
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        structure = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Detect)
    except (RuntimeError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).replace(str(path), "").split()).strip(": ")
        raise InputError(f"{path}: cannot read as a PDB/mmCIF structure ({detail or type(exc).__name__})") from None
    if len(structure) == 0:
        raise InputError(f"{path}: no atoms (no model) in the file")
    if not 0 <= model < len(structure):
        raise InputError(f"{path}: model {model} requested but the file has {len(structure)} model(s) (0-based)")
    _check_unique_residues(structure[model], path, gemmi)
    structure.remove_alternative_conformations()
    gemmi_model = structure[model]

    wanted = _normalise_chains(chains)
    present = [chain.name for chain in gemmi_model]
    if wanted is not None:
        missing = [c for c in wanted if c not in present]
        if missing:
            raise InputError(f"{path}: chain(s) {missing} not found; the file has chains {present}")

    coords: list[tuple[float, float, float]] = []
    ids: list[tuple[str, int, str]] = []
    resnames: list[str] = []
    chain_ids: list[str] = []
    chain_lengths: list[int] = []
    sequences: list[str] = []
    skipped: list[SkippedResidue] = []
    for chain in gemmi_model:
        if wanted is not None and chain.name not in wanted:
            continue
        letters: list[str] = []
        for residue in chain:
            info = gemmi.find_tabulated_residue(residue.name)
            if not _is_protein_residue(residue, info):
                continue
            icode = residue.seqid.icode.strip()
            calpha = residue.find_atom("CA", "*")
            if calpha is None or calpha.element.name not in ("C", "X"):
                skipped.append(SkippedResidue(chain.name, residue.seqid.num, icode, residue.name, "no CA atom"))
                continue
            coords.append((calpha.pos.x, calpha.pos.y, calpha.pos.z))
            ids.append((chain.name, residue.seqid.num, icode))
            resnames.append(residue.name)
            letters.append(_one_letter(residue.name, info))
        if letters:
            chain_ids.append(chain.name)
            chain_lengths.append(len(letters))
            sequences.append("".join(letters))

    if not coords:
        which = "the selected chains" if wanted is not None else "any chain"
        raise InputError(f"{path}: no protein Cα atoms in {which} of model {model}")
    width = max(len(c) for c in chain_ids)
    return CalphaStructure(
        source=str(path),
        coords=np.asarray(coords, dtype=np.float64),
        residue_ids=np.array(ids, dtype=residue_id_dtype(width)),
        resnames=tuple(resnames),
        chain_ids=tuple(chain_ids),
        chain_lengths=tuple(chain_lengths),
        sequences=tuple(sequences),
        skipped=tuple(skipped),
    )


def structure_stem(path: str | os.PathLike[str]) -> str:
    """File name without ``.gz`` and the structure suffix: ``1abc.cif.gz`` -> ``1abc``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    lowered = name.lower()
    for suffix in STRUCTURE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_structure_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends with a structure suffix (optionally followed by ``.gz``)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(STRUCTURE_SUFFIXES)
