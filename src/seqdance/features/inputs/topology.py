"""Topologies of every format: what MDTraj reads, GROMACS TPR (and other formats MDTraj does not read) through
MDAnalysis, and mdCATH files; plus the insertion codes MDTraj's topology does not keep.

* anything ``mdtraj.load_topology`` reads: PDB/mmCIF, PSF, GRO, PRMTOP/PARM7, MOL2, MDTraj HDF5, ...;
* GROMACS ``.tpr``, TOP/ITP, ... converted from an MDAnalysis universe;
* an mdCATH HDF5 file (:mod:`.mdcath`): its ``pdbProteinAtoms`` text.

Insertion codes of PDB files are read from the text, one per residue in MDTraj's residue order (alternate
locations of one atom are one atom for MDTraj, so they are counted once), and handed on per atom.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.ensembles import check_models_agree
from seqdance.features.inputs.files import (
    MDTRAJ_TOPOLOGY_SUFFIXES,
    MMCIF_SUFFIXES,
    PDB_SUFFIXES,
    LoadedTopology,
    suffix,
)
from seqdance.features.inputs.mdcath import is_mdcath_file, mdcath_pdb_text
from seqdance.features.inputs.spec import InputSpec, InputSpecLike


def _pdb_residues(text: str) -> list[tuple[str, str]]:
    """(residue number field, insertion code) of each residue of the first model of a PDB text, in file order.

    A residue starts where chain, number or insertion code change (or after TER), or where the residue name
    changes on a record without an alternate-location letter: MDTraj's rules. Alternate locations of an atom
    (altloc ``B`` records) therefore add no residue and no atom, as in MDTraj's topology.
    """
    residues: list[tuple[str, str]] = []
    current: tuple[str, str, str, str] | None = None
    for line in io.StringIO(text):
        record = line[:6]
        if record in ("ATOM  ", "HETATM"):
            line = line.rstrip("\n").ljust(27)
            chain, number, icode, altloc, name = line[21], line[22:26], line[26].strip(), line[16], line[17:20]
            if current is None or (chain, number, icode) != current[:3] or (altloc == " " and name != current[3]):
                residues.append((number.strip(), icode))
            current = (chain, number, icode, name if current is None or altloc == " " else current[3])
        elif record.startswith("TER"):
            current = None
        elif record.startswith("ENDMDL") and residues:
            break
    return residues


def pdb_insertion_codes(text: str, topology: md.Topology) -> np.ndarray | None:
    """Insertion code of each atom of ``topology`` (MDTraj's reading of the PDB ``text``), or None when the text's
    residues do not line up with MDTraj's (then no residue gets one)."""
    residues = _pdb_residues(text)
    if len(residues) != topology.n_residues:
        return None
    for (number, _), residue in zip(residues, topology.residues):
        if number != str(residue.resSeq):  # hybrid-36 or hexadecimal numbers beyond 9999: MDTraj's own count
            return None
    return np.array([residues[atom.residue.index][1] for atom in topology.atoms], dtype=object)


def _pdb_topology(text: str, path: str) -> LoadedTopology:
    """MDTraj's topology of a PDB text (an mdCATH file's) and its insertion codes."""
    with tempfile.NamedTemporaryFile("w", suffix=".pdb", delete=False) as fh:
        fh.write(text)
        tmp = fh.name
    try:
        topology = md.load_topology(tmp)
    finally:
        os.unlink(tmp)
    return LoadedTopology(topology, pdb_insertion_codes(text, topology), path)


def _read_text(path: str) -> str:
    if path.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rt", errors="replace") as fh:
            return fh.read()
    with open(path, errors="replace") as fh:
        return fh.read()


def _element(symbol: str, name: str) -> md.element.Element:
    """Element by symbol, else guessed from the atom name's first letter (protein atoms: H, C, N, O, S)."""
    try:
        return md.element.get_by_symbol(symbol.strip().capitalize())
    except (KeyError, AttributeError):
        letter = "".join(ch for ch in name if ch.isalpha())[:1].upper()
        if letter in ("H", "C", "N", "O", "S", "P"):
            return md.element.get_by_symbol(letter)
        return md.element.virtual_site


def _topology_from_mdanalysis(path: str) -> LoadedTopology:
    """Topology of a file MDTraj cannot read (GROMACS TPR, TOP/ITP, ...) converted from MDAnalysis."""
    try:
        import MDAnalysis as mda
    except ImportError as exc:  # pragma: no cover - MDAnalysis is an optional dependency
        raise InputError(f"{path}: reading this topology format needs MDAnalysis (pip install MDAnalysis)") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            universe = mda.Universe(path)
    except Exception as exc:  # the reader's failure, whatever its type: named as the file's problem
        raise InputError(f"{path}: cannot read topology ({type(exc).__name__}: {exc})") from exc
    atoms = universe.atoms
    names = [str(n) for n in atoms.names]
    symbols = [str(e) for e in atoms.elements] if hasattr(atoms, "elements") else [""] * len(atoms)
    chain_ids = [str(c) for c in (atoms.chainIDs if hasattr(atoms, "chainIDs") else atoms.segids)]
    segids = [str(s) for s in atoms.segids]
    resids, resnames, resindices = atoms.resids, atoms.resnames, atoms.resindices

    topology = md.Topology()
    chain = residue = None
    last_chain = last_residue = None
    for k in range(len(atoms)):
        if chain_ids[k] != last_chain:
            chain, last_chain, last_residue = topology.add_chain(), chain_ids[k], None
            chain.chain_id = chain_ids[k]
        if resindices[k] != last_residue:
            residue = topology.add_residue(str(resnames[k]), chain, resSeq=int(resids[k]), segment_id=segids[k])
            last_residue = resindices[k]
        topology.add_atom(names[k], _element(symbols[k], names[k]), residue, serial=k + 1)
    if hasattr(universe, "bonds"):
        atom_list = list(topology.atoms)
        for i, j in np.asarray(universe.bonds.indices, dtype=np.int64).reshape(-1, 2):
            topology.add_bond(atom_list[i], atom_list[j])
    icodes = np.asarray(atoms.icodes, dtype=object) if hasattr(atoms, "icodes") else None
    return LoadedTopology(topology, icodes, path)


def load_topology(path: InputSpecLike) -> LoadedTopology:
    """Full topology of a topology file (see module docstring for the formats); a ``#selector`` is kept in the
    name (an mdCATH file as its own trajectory)."""
    spec = InputSpec.parse(path)
    spec.require("topology")
    file = spec.path
    if is_mdcath_file(file):
        return _pdb_topology(mdcath_pdb_text(file), str(spec))
    kind = suffix(file)
    if kind in MDTRAJ_TOPOLOGY_SUFFIXES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                topology = md.load_topology(file)
        except Exception as exc:  # the reader's failure, whatever its type: named as the file's problem
            if kind in PDB_SUFFIXES + MMCIF_SUFFIXES:
                check_models_agree(file)  # models that disagree: say which, rather than MDTraj's generic message
            raise InputError(f"{file}: cannot read topology ({type(exc).__name__}: {exc})") from exc
        icodes = pdb_insertion_codes(_read_text(file), topology) if kind in PDB_SUFFIXES else None
        return LoadedTopology(topology, icodes, file)
    return _topology_from_mdanalysis(file)
