"""The protein part of an MD topology: which atoms, which residues, their identifiers and sequence.

Force fields name residues in many ways (CHARMM ``HSD``, GROMACS ``LYSH``/``CYSH``, Amber ``HIE``/``CYX``/``NALA``);
names are normalised to the standard amino acids so that DSSP, dihedral and interaction chemistry see what they
expect. Residues are identified by (chain, residue number, insertion code) as written in the topology, never by
position arithmetic. Capping groups (ACE, NME, ...) keep their atoms (they shape SASA and contacts) but get no row.
"""

from __future__ import annotations

from dataclasses import dataclass

import mdtraj as md
import numpy as np

from seqdance.errors import InputError

#: Standard amino acids and their one-letter codes.
ONE_LETTER: dict[str, str] = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V", "SEC": "U", "PYL": "O", "MSE": "M",
}

#: Force-field residue names -> standard name (protonation/tautomer/disulfide variants, terminal forms).
_VARIANTS: dict[str, str] = {
    "HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HIN": "HIS",
    "HISA": "HIS", "HISB": "HIS", "HISD": "HIS", "HISE": "HIS", "HISH": "HIS", "HIS1": "HIS", "HIS2": "HIS",
    "LYSH": "LYS", "LYN": "LYS", "LYP": "LYS", "LSN": "LYS",
    "CYSH": "CYS", "CYX": "CYS", "CYM": "CYS", "CYS1": "CYS", "CYS2": "CYS", "CYN": "CYS",
    "ASPH": "ASP", "ASH": "ASP", "AS4": "ASP", "GLUH": "GLU", "GLH": "GLU", "GL4": "GLU",
    "ARGN": "ARG", "ARN": "ARG", "TYM": "TYR",
}

#: Residue names of chemical caps and solvent-like pieces that MDTraj may call "protein" but that are no residue.
_NOT_RESIDUES = frozenset({"ACE", "NME", "NMA", "NH2", "NHE", "FOR", "CT3"})


def normalise_residue_name(name: str) -> str:
    """Standard residue name for a force-field variant (``HSD`` -> ``HIS``, ``NALA``/``CALA`` -> ``ALA``)."""
    upper = name.strip().upper()
    if upper in ONE_LETTER:
        return upper
    if upper in _VARIANTS:
        return _VARIANTS[upper]
    # Amber/GROMACS terminal residues: N- or C- prefix on a (variant) name, e.g. NALA, CLYS, NHIE.
    if len(upper) == 4 and upper[0] in "NC":
        rest = upper[1:]
        if rest in ONE_LETTER:
            return rest
        if rest in _VARIANTS:
            return _VARIANTS[rest]
    return upper


RESIDUE_ID_DTYPE = np.dtype([("chain", "U8"), ("resSeq", "i8"), ("icode", "U4")])


@dataclass(frozen=True)
class ProteinTopology:
    """Protein atoms of a system and the residues that get feature rows.

    ``topology`` holds only the protein atoms (normalised residue names); ``atom_indices`` maps its atoms to the
    atoms of the file's full topology (what a trajectory frame holds). ``atom_residue`` gives, per protein atom,
    its output residue row or -1 for atoms of caps.
    """

    topology: md.Topology
    atom_indices: np.ndarray  # (n_protein_atoms,) indices into the full topology
    atom_residue: np.ndarray  # (n_protein_atoms,) output residue row, -1 for caps
    residue_rows: np.ndarray  # (N,) residue.index in ``topology`` of each output residue
    residue_ids: np.ndarray  # (N,) RESIDUE_ID_DTYPE
    residue_names: tuple[str, ...]  # (N,) normalised 3-letter names
    chain_lengths: np.ndarray  # residues per chain, in order
    sequence: str  # one-letter, chains joined by ':'
    chain_labels: tuple[str, ...]  # per chain of ``topology``: the label used in residue ids

    @property
    def n_residues(self) -> int:
        return len(self.residue_rows)

    @property
    def n_atoms(self) -> int:
        return len(self.atom_indices)

    @property
    def chain_breaks(self) -> np.ndarray:
        """Row index at which each chain after the first starts."""
        return np.cumsum(self.chain_lengths)[:-1]

    def describe_residue(self, row: int) -> str:
        rid = self.residue_ids[row]
        return f"{self.residue_names[row]}{rid['resSeq']}{rid['icode']} (chain {rid['chain']})"


#: C-terminal carboxylate oxygens under force-field names -> the names DSSP and the backbone rules expect.
_TERMINAL_OXYGENS = (("O", ("OT1", "OC1", "O1")), ("OXT", ("OT2", "OC2", "O2")))


def _standardise_terminal_oxygens(topology: md.Topology) -> None:
    """Rename OT1/OC1/O1 -> O and OT2/OC2/O2 -> OXT in residues that lack an ``O`` (as MDTraj's PDB reader)."""
    for residue in topology.residues:
        atoms = {a.name: a for a in residue.atoms}
        if "O" in atoms or "CA" not in atoms:
            continue
        for standard, aliases in _TERMINAL_OXYGENS:
            alias = next((n for n in aliases if n in atoms), None)
            if alias is not None and standard not in atoms:
                atoms[alias].name = standard


def chain_label(chain: md.core.topology.Chain, position: int) -> str:
    """The label residue ids use for a chain: its chain ID, else its segment name, else A, B, ... by position."""
    label = (getattr(chain, "chain_id", None) or "").strip()
    if not label:
        segment = next((r.segment_id for r in chain.residues if (r.segment_id or "").strip()), "")
        label = segment.strip()
    if not label:
        label = chr(ord("A") + position) if position < 26 else str(position)
    return label[:8]


def unique_labels(labels: list[str]) -> tuple[str, ...]:
    """Chains sharing a label (e.g. two GRO molecules without chain IDs) get their position appended."""
    counts = {label: labels.count(label) for label in labels}
    return tuple(label if counts[label] == 1 else f"{label}{i}" for i, label in enumerate(labels))


def build_protein_topology(full: md.Topology, insertion_codes: np.ndarray | None = None, *,
                           source: str = "topology") -> ProteinTopology:
    """Select the protein atoms of ``full`` and describe its residues.

    ``insertion_codes`` (one string per atom of ``full``) come from the file when its format has them (PDB);
    MDTraj's topology does not keep them. Raises ValueError naming ``source`` when there is no protein.
    """
    for residue in full.residues:
        residue.name = normalise_residue_name(residue.name)
    _standardise_terminal_oxygens(full)
    protein_atoms = np.array([a.index for a in full.atoms if a.residue.is_protein], dtype=np.int64)
    if protein_atoms.size == 0:
        names = sorted({r.name for r in full.residues})[:10]
        raise InputError(f"{source}: no protein residues found (residue names include {names})")
    topology = full.subset(protein_atoms)
    codes = (np.asarray(insertion_codes, dtype=object)[protein_atoms] if insertion_codes is not None
             else np.full(len(protein_atoms), "", dtype=object))

    # First atom of each residue in the subset -> its insertion code.
    residue_icode = {}
    for atom, code in zip(topology.atoms, codes):
        residue_icode.setdefault(atom.residue.index, str(code or "").strip())

    chain_labels = unique_labels([chain_label(c, i) for i, c in enumerate(topology.chains)])
    rows: list[int] = []
    ids: list[tuple[str, int, str]] = []
    names: list[str] = []
    letters_by_chain: list[list[str]] = []
    for chain, label in zip(topology.chains, chain_labels):
        letters: list[str] = []
        for residue in chain.residues:
            if residue.name in _NOT_RESIDUES or not any(a.name == "CA" for a in residue.atoms):
                continue
            rows.append(residue.index)
            ids.append((label, int(residue.resSeq), residue_icode.get(residue.index, "")))
            names.append(residue.name)
            letters.append(ONE_LETTER.get(residue.name, "X"))
        if letters:
            letters_by_chain.append(letters)
    if not rows:
        raise InputError(f"{source}: the protein atoms contain no residue with a CA atom")

    residue_rows = np.asarray(rows, dtype=np.int64)
    row_of_residue = np.full(topology.n_residues, -1, dtype=np.int64)
    row_of_residue[residue_rows] = np.arange(len(residue_rows))
    atom_residue = row_of_residue[np.array([a.residue.index for a in topology.atoms], dtype=np.int64)]
    residue_ids = np.array(ids, dtype=RESIDUE_ID_DTYPE)
    check_unique_ids(residue_ids, source)
    return ProteinTopology(
        topology=topology,
        atom_indices=protein_atoms,
        atom_residue=atom_residue,
        residue_rows=residue_rows,
        residue_ids=residue_ids,
        residue_names=tuple(names),
        chain_lengths=np.array([len(c) for c in letters_by_chain], dtype=np.int64),
        sequence=":".join("".join(c) for c in letters_by_chain),
        chain_labels=chain_labels,
    )


def check_unique_ids(residue_ids: np.ndarray, source: str) -> None:
    """Raise :class:`InputError` naming ``source`` and the residue when two residues share (chain, number, icode)."""
    keys = [(str(r["chain"]), int(r["resSeq"]), str(r["icode"])) for r in residue_ids]
    if len(set(keys)) != len(keys):
        seen: set[tuple[str, int, str]] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InputError(
            f"{source}: residue {dup[1]}{dup[2]} of chain {dup[0]!r} occurs twice; residues must be unique by "
            "(chain, residue number, insertion code) - give chains distinct IDs or segment names"
        )
