"""One-bead-per-residue (Cα-trace) inputs: detection, validation and reading.

Coarse-grained simulations such as CALVADOS (IDRome), HPS or Cα-only structure sets write one bead per residue,
named by the residue's 3-letter code (docs/design.md#calpha-traces). Martini models have several beads per residue, one
of them the backbone bead ``BB`` (the centre of N, Cα, C and O); their ``BB`` beads are read as the trace (input kind
``martini``: the same properties, on the backbone centre instead of Cα; docs/coarse_grained.md). This module recognises
such a topology, checks it (known residue names, chains that are continuous in every frame), reads its frames in chunks
made whole across periodic boundaries. What a Cα trace defines (the Cα RMSF and movement correlation of
docs/design.md#md-features) is computed by :class:`~seqdance.features.md.properties.CalphaFluctuations` with the
same superposition and accumulator as the all-atom path, so both give the same numbers for the same Cα coordinates.
Atom-level properties (SASA, DSSP, dihedrals, interactions) are not defined on a trace; they need back-mapping
(:mod:`seqdance.features.inputs.backmapping`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.files import LoadedTopology, check_coordinates
from seqdance.features.inputs.periodic import make_whole, spanning_bonds
from seqdance.features.inputs.protein import (
    ONE_LETTER,
    RESIDUE_ID_DTYPE,
    ProteinTopology,
    chain_label,
    check_unique_ids,
    normalise_residue_name,
    unique_labels,
)
from seqdance.features.inputs.spec import InputSpecLike
from seqdance.features.inputs.topology import load_topology
from seqdance.features.inputs.trajectories import open_sources
from seqdance.features.options import InputKind

#: Bond length of consecutive beads in CALVADOS (nm); also the trans Cα-Cα distance of real proteins.
CALVADOS_BOND_NM = 0.38
#: Default largest distance (nm) between consecutive beads of one chain; farther means a chain break.
#: CALVADOS bonds are harmonic around 0.38 nm with k = 8033 kJ mol⁻¹ nm⁻² (thermal s.d. ≈ 0.018 nm at 300 K),
#: all-atom trans Cα-Cα distances stay below 0.40 nm and cis-proline ones are ~0.29 nm, so 0.5 nm is more
#: than 6 s.d. above any bonded pair and well below two bond lengths (a missing residue).
MAX_BEAD_DISTANCE_NM = 0.5

#: Keys of the Cα properties, as extract_md names them (schema ``rmsf_nor`` returned raw as ``rmsf``, ``corr``).
CALPHA_PROPERTY_KEYS: tuple[str, ...] = ("rmsf", "corr")


def is_one_bead_per_residue(topology: md.Topology) -> bool:
    """True when every residue of ``topology`` holds exactly one atom (a Cα trace or a one-bead CG model)."""
    if topology.n_residues == 0:
        return False
    return all(residue.n_atoms == 1 for residue in topology.residues)


#: Name of the backbone bead of Martini protein models (martinize, martinize2; Martini 2 and 3).
MARTINI_BACKBONE_BEAD = "BB"


def martini_backbone(topology: md.Topology) -> np.ndarray | None:
    """Indices of the backbone beads of a Martini protein model, one per amino-acid residue; None when
    ``topology`` is not one (it has a Cα atom, or some amino-acid residue lacks exactly one ``BB`` bead).
    Residues that are not amino acids (Martini water ``W``, ions, lipids) are left out."""
    if topology.n_atoms == 0 or any(atom.name == "CA" for atom in topology.atoms):
        return None
    beads: list[int] = []
    for residue in topology.residues:
        backbone = [atom.index for atom in residue.atoms if atom.name == MARTINI_BACKBONE_BEAD]
        if normalise_residue_name(residue.name) not in ONE_LETTER:
            if backbone:  # a backbone bead in a residue with an unknown name: let bead_topology name it
                beads.extend(backbone)
            continue
        if len(backbone) != 1:
            return None
        beads.append(backbone[0])
    return np.array(beads, dtype=np.int64) if beads else None


def check_martini_backbone(topology: md.Topology, *, source: str) -> None:
    """Raise :class:`InputError` naming the residue when ``topology`` looks like a Martini model (``BB`` beads,
    no Cα) but some amino-acid residue has no single ``BB`` bead, so that it is not taken for an all-atom input."""
    if any(atom.name == "CA" for atom in topology.atoms) or not any(
            atom.name == MARTINI_BACKBONE_BEAD for atom in topology.atoms):
        return
    for residue in topology.residues:
        if normalise_residue_name(residue.name) not in ONE_LETTER:
            continue
        count = sum(1 for atom in residue.atoms if atom.name == MARTINI_BACKBONE_BEAD)
        if count != 1:
            what = "no backbone bead 'BB'" if count == 0 else f"{count} backbone beads 'BB'"
            raise InputError(f"{source}: looks like a Martini model (backbone beads 'BB', no Cα atoms), but residue "
                             f"{residue.name}{residue.resSeq} (chain {residue.chain.index}) has {what}; each "
                             "amino-acid residue needs exactly one")


def trace_beads(topology: md.Topology) -> tuple[np.ndarray, InputKind] | None:
    """(indices of the beads that trace the chain, one per residue, and the input kind) of a coarse-grained
    topology: every atom of a one-bead-per-residue model ("calpha") or the BB beads of a Martini model
    ("martini"); None for an all-atom topology."""
    if is_one_bead_per_residue(topology):
        return np.arange(topology.n_atoms, dtype=np.int64), "calpha"
    backbone = martini_backbone(topology)
    return (backbone, "martini") if backbone is not None else None


def bead_topology(full: md.Topology, *, source: str = "topology", beads: np.ndarray | None = None) -> ProteinTopology:
    """Describe a coarse-grained topology as a :class:`ProteinTopology` whose atoms are its trace beads: every
    atom of a one-bead-per-residue topology, or the atoms ``beads`` (one per residue, e.g. Martini's BB beads;
    read from the trajectory by these indices).

    Every residue must be a standard amino acid (3-letter code or a force-field variant such as ``HSD``);
    otherwise raises :class:`InputError` naming ``source`` and the residue.
    """
    if beads is None:
        if not is_one_bead_per_residue(full):
            multi = next(r for r in full.residues if r.n_atoms != 1) if full.n_residues else None
            what = f"residue {multi.name}{multi.resSeq} has {multi.n_atoms} atoms" if multi else "it has no residues"
            raise InputError(f"{source}: not a one-bead-per-residue topology ({what})")
        beads = np.arange(full.n_atoms, dtype=np.int64)
    beads = np.asarray(beads, dtype=np.int64)
    topology = full.subset(beads)
    chain_labels = unique_labels([chain_label(c, i) for i, c in enumerate(topology.chains)])
    ids: list[tuple[str, int, str]] = []
    names: list[str] = []
    letters_by_chain: list[str] = []
    for chain, label in zip(topology.chains, chain_labels):
        letters = []
        for residue in chain.residues:
            name = normalise_residue_name(residue.name)
            if name not in ONE_LETTER:
                raise InputError(
                    f"{source}: bead {residue.index + 1} (residue {residue.name!r} {residue.resSeq}, chain "
                    f"{label}) is not an amino acid; a one-bead-per-residue topology must name each bead's "
                    "residue by its 3-letter code (ALA, ARG, ..., or a force-field variant such as HSD)"
                )
            residue.name = name
            ids.append((label, int(residue.resSeq), ""))
            names.append(name)
            letters.append(ONE_LETTER[name])
        if letters:
            letters_by_chain.append("".join(letters))
    residue_ids = np.array(ids, dtype=RESIDUE_ID_DTYPE)
    check_unique_ids(residue_ids, source)
    n = topology.n_atoms
    return ProteinTopology(
        topology=topology,
        atom_indices=beads,
        atom_residue=np.arange(n, dtype=np.int64),
        residue_rows=np.array([a.residue.index for a in topology.atoms], dtype=np.int64),
        residue_ids=residue_ids,
        residue_names=tuple(names),
        chain_lengths=np.array([len(c) for c in letters_by_chain], dtype=np.int64),
        sequence=":".join(letters_by_chain),
        chain_labels=chain_labels,
    )


def _bonded_copy(protein: ProteinTopology) -> md.Topology:
    """The bead topology with a bond between consecutive beads of each chain (for making chains whole)."""
    topology = protein.topology.copy()
    for chain in topology.chains:
        atoms = list(chain.atoms)
        for a, b in itertools.pairwise(atoms):
            topology.add_bond(a, b)
    return topology


def consecutive_pairs(protein: ProteinTopology) -> np.ndarray:
    """(m, 2) bead indices of consecutive residues within each chain."""
    ends = np.cumsum(protein.chain_lengths)
    starts = ends - protein.chain_lengths
    pairs = [np.stack([np.arange(s, e - 1), np.arange(s + 1, e)], axis=1) for s, e in zip(starts, ends)]
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), dtype=np.int64)


def check_chain_continuity(xyz: np.ndarray, protein: ProteinTopology, *, source: str, first_frame: int = 0,
                           stride: int = 1, max_bond_nm: float = MAX_BEAD_DISTANCE_NM) -> None:
    """Raise :class:`InputError` if consecutive beads of a chain are farther apart than ``max_bond_nm`` or a
    coordinate is not finite; the message names ``source``, the frame (``first_frame + k * stride``) and the
    residues."""
    bad = ~np.isfinite(xyz).all(axis=(1, 2))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{source}: frame {first_frame + k * stride}: non-finite bead coordinates")
    pairs = consecutive_pairs(protein)
    if not len(pairs):
        return
    dist = np.linalg.norm(xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]], axis=-1)
    broken = dist > max_bond_nm
    if broken.any():
        k, p = (int(v) for v in np.argwhere(broken)[0])
        i, j = pairs[p]
        raise InputError(
            f"{source}: frame {first_frame + k * stride}: chain break between consecutive beads "
            f"{protein.describe_residue(int(i))} and {protein.describe_residue(int(j))}: {dist[k, p]:.3f} nm apart "
            f"(> {max_bond_nm} nm; bonded beads are ~{CALVADOS_BOND_NM} nm). Make the chain whole across the "
            "periodic box, or split the chain in the topology where residues are missing"
        )


def load_bead_topology(topology: InputSpecLike | LoadedTopology) -> tuple[LoadedTopology, ProteinTopology] | None:
    """(file topology, trace description) when ``topology`` is coarse-grained (:func:`trace_beads`), else None."""
    loaded = topology if isinstance(topology, LoadedTopology) else load_topology(topology)
    found = trace_beads(loaded.topology)
    if found is None:
        return None
    return loaded, bead_topology(loaded.topology, source=loaded.path, beads=found[0])


def iter_bead_chunks(topology: InputSpecLike | LoadedTopology,
                     trajectory: InputSpecLike | Sequence[InputSpecLike] | None = None, *,
                     start: int = 0, stop: int | None = None, stride: int = 1, chunk_frames: int = 1000,
                     max_bond_nm: float = MAX_BEAD_DISTANCE_NM,
                     ) -> Iterator[tuple[ProteinTopology, str, int, np.ndarray]]:
    """Yield (bead topology, source name, first frame index, (F, N, 3) float32 nm) chunk by chunk.

    Chains are made whole across periodic boundaries (when the trajectory has a box) and checked for breaks.
    Several trajectories (replicas) follow each other. Raises :class:`InputError` when the topology is not
    one-bead-per-residue, names an unknown residue, or a chain breaks in some frame.
    """
    found = load_bead_topology(topology)
    if found is None:
        where = topology.path if isinstance(topology, LoadedTopology) else topology
        raise InputError(f"{where}: not a coarse-grained topology (some residue has several atoms, and it is not a "
                         "Martini model with one BB bead per residue)")
    loaded, protein = found
    bonded = _bonded_copy(protein)
    bonds: np.ndarray | None = None
    for source in open_sources(loaded, trajectory):
        seen = 0
        for chunk in source.chunks(protein.atom_indices, start=start, stop=stop, stride=stride,
                                   chunk_frames=chunk_frames):
            xyz = np.ascontiguousarray(chunk.xyz, dtype=np.float32)
            first = start + seen * stride
            check_coordinates(xyz, first + np.arange(len(xyz)) * stride, source.name,
                              lambda k: f"bead {k + 1} ({protein.describe_residue(k)})")
            if chunk.box is not None:
                if bonds is None:
                    bonds = spanning_bonds(bonded, xyz[0])
                traj = md.Trajectory(xyz, bonded)
                traj.unitcell_vectors = chunk.box
                make_whole(traj, bonds)
                xyz = traj.xyz
            check_chain_continuity(xyz, protein, source=source.name, first_frame=first, stride=stride,
                                   max_bond_nm=max_bond_nm)
            yield protein, source.name, first, xyz
            seen += len(xyz)
        if seen == 0:
            raise InputError(f"{source.name}: no frames selected (start={start}, stop={stop}, stride={stride})")


def calpha_trace(protein: ProteinTopology, xyz: np.ndarray) -> np.ndarray:
    """(F, N, 3) Cα positions of the output residues of an all-atom ``protein`` from its frames ``xyz``."""
    top = protein.topology
    ca = np.array([next(a.index for a in top.residue(int(r)).atoms if a.name == "CA")
                   for r in protein.residue_rows], dtype=np.int64)
    return np.ascontiguousarray(np.asarray(xyz)[:, ca], dtype=np.float32)
