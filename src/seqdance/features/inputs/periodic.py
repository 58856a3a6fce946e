"""Making the protein whole across periodic boundaries before any geometry is measured.

MD engines write molecules wrapped into the box, so a protein may be split in two halves (GROMACS XTC/TRR do
this by default). MDTraj's ``make_molecules_whole`` (C code) shifts each atom to the periodic image nearest to
its parent along a spanning tree of the bond graph; this module builds that tree once: topology bonds, plus a
bond from any atom the topology leaves unbonded (e.g. CHARMM cap atoms in mdCATH PDBs) to its nearest bonded
atom of the same residue in the first frame, and C-N links between consecutive residues left unbonded. Each
chain is made whole on its own; chains of a complex must not be split from each other
(``gmx trjconv -pbc cluster``).
"""

from __future__ import annotations

import itertools

import mdtraj as md
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components


def spanning_bonds(topology: md.Topology, first_frame: np.ndarray) -> np.ndarray:
    """(m, 2) int32 bonds in breadth-first order: each atom appears as second element after its parent."""
    n = topology.n_atoms
    bonds = np.array([[a.index, b.index] for a, b in topology.bonds], dtype=np.int64).reshape(-1, 2)
    bonded = np.zeros(n, dtype=bool)
    bonded[bonds.ravel()] = True
    extra = []
    residue_of = np.array([a.residue.index for a in topology.atoms], dtype=np.int64)
    for atom in np.flatnonzero(~bonded):
        same_residue = (residue_of == residue_of[atom]) & (np.arange(n) != atom)
        # prefer an atom the topology does bond, so that unbonded atoms join the residue's molecule
        mates = np.flatnonzero(same_residue & bonded) if (same_residue & bonded).any() else np.flatnonzero(same_residue)
        if mates.size:
            dist = np.linalg.norm(first_frame[mates] - first_frame[atom], axis=1)
            extra.append((mates[np.argmin(dist)], atom))
    extra.extend(_missing_peptide_bonds(topology, bonds))
    if extra:
        bonds = np.vstack([bonds, np.asarray(extra, dtype=np.int64)])
    if len(bonds) == 0:
        return np.zeros((0, 2), dtype=np.int32)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
    n_components, labels = connected_components(graph, directed=False)
    ordered = []
    for component in range(n_components):
        members = np.flatnonzero(labels == component)
        if members.size < 2:
            continue
        order, parent = breadth_first_order(graph, members[0], directed=False, return_predecessors=True)
        ordered.append(np.stack([parent[order[1:]], order[1:]], axis=1))
    return np.concatenate(ordered).astype(np.int32) if ordered else np.zeros((0, 2), dtype=np.int32)


def _missing_peptide_bonds(topology: md.Topology, bonds: np.ndarray) -> list[tuple[int, int]]:
    """C(i)-N(i+1) links of consecutive residues in a chain that the topology leaves unbonded (non-standard
    residues MDTraj has no template for), so that a chain is one molecule for make_whole."""
    have = {(min(a, b), max(a, b)) for a, b in bonds.tolist()}
    extra = []
    for chain in topology.chains:
        residues = list(chain.residues)
        for left, right in itertools.pairwise(residues):
            c = next((a.index for a in left.atoms if a.name == "C"), None)
            n = next((a.index for a in right.atoms if a.name == "N"), None)
            if c is not None and n is not None and (min(c, n), max(c, n)) not in have:
                linked = any((a.index, b.index) in have or (b.index, a.index) in have
                             for a in left.atoms for b in right.atoms)
                if not linked:
                    extra.append((c, n))
    return extra


def make_whole(traj: md.Trajectory, sorted_bonds: np.ndarray) -> None:
    """Make each molecule of ``traj`` whole in place (no-op without a unit cell or bonds)."""
    if traj.unitcell_vectors is None or len(sorted_bonds) == 0:
        return
    if not np.all(np.isfinite(traj.unitcell_vectors)) or np.any(traj.unitcell_lengths <= 0):
        return
    traj.make_molecules_whole(inplace=True, sorted_bonds=sorted_bonds)
