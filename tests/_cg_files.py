"""Coarse-grained files made from real all-atom trajectories, for the coarse-grained input tests and benchmarks:
a CALVADOS-like Cα trace and a Martini-like model (BB + side-chain beads, with water beads)."""

from __future__ import annotations

from pathlib import Path

import mdtraj as md
import numpy as np

#: Atoms a Martini backbone bead stands for (martinize maps N, CA, C, O to BB).
BACKBONE_ATOMS = ("N", "CA", "C", "O")


def write_selection_files(traj: md.Trajectory, selection: str, folder: Path, stem: str) -> tuple[Path, Path]:
    """The atoms of ``traj`` that an MDTraj ``selection`` picks, as PDB (first frame) + DCD."""
    part = traj.atom_slice(traj.topology.select(selection))
    pdb, dcd = folder / f"{stem}.pdb", folder / f"{stem}.dcd"
    part[0].save_pdb(str(pdb))
    part.save_dcd(str(dcd))
    return pdb, dcd


def write_calpha_files(traj: md.Trajectory, folder: Path, stem: str) -> tuple[Path, Path]:
    """A CALVADOS-like pair (PDB of the beads + DCD) holding the Cα atoms of an all-atom trajectory."""
    return write_selection_files(traj, "name CA and protein", folder, stem)


def write_heavy_files(traj: md.Trajectory, folder: Path, stem: str) -> tuple[Path, Path]:
    """The trajectory without its hydrogens (PDB + DCD), as X-ray/PED conformers come."""
    return write_selection_files(traj, "not element H", folder, stem)


def martini_model(traj: md.Trajectory, *, waters: int = 3) -> tuple[md.Trajectory, np.ndarray]:
    """A Martini-like model of the protein of ``traj``: per residue a ``BB`` bead at the centre of its N, CA, C,
    O and an ``SC1`` bead at the centre of its side-chain heavy atoms (none for glycine), then ``waters``
    solvent beads ``W``. Returns the model and the (F, residues, 3) BB positions."""
    topology = md.Topology()
    columns: list[list[int]] = []
    backbone_rows: list[int] = []
    for source_chain in traj.topology.chains:
        residues = [r for r in source_chain.residues if r.is_protein]
        if not residues:
            continue
        chain = topology.add_chain()
        for residue in residues:
            new = topology.add_residue(residue.name, chain, resSeq=residue.resSeq)
            backbone = [a.index for a in residue.atoms if a.name in BACKBONE_ATOMS]
            side = [a.index for a in residue.atoms
                    if a.name not in (*BACKBONE_ATOMS, "OXT", "OT1", "OT2") and a.element.symbol != "H"]
            backbone_rows.append(len(columns))
            topology.add_atom("BB", md.element.carbon, new)
            columns.append(backbone)
            if side:
                topology.add_atom("SC1", md.element.carbon, new)
                columns.append(side)
    xyz = np.stack([traj.xyz[:, idx].mean(axis=1) for idx in columns], axis=1)
    if waters:
        solvent = topology.add_chain()
        centre = traj.xyz.mean(axis=(0, 1))
        for k in range(waters):
            topology.add_atom("W", md.element.oxygen, topology.add_residue("W", solvent, resSeq=k + 1))
        offsets = np.array([[3.0 + k, 0.0, 0.0] for k in range(waters)], dtype=np.float32)
        xyz = np.concatenate([xyz, np.broadcast_to(centre + offsets, (traj.n_frames, waters, 3))], axis=1)
    model = md.Trajectory(xyz.astype(np.float32), topology)
    return model, model.xyz[:, backbone_rows]


def write_martini_files(traj: md.Trajectory, folder: Path, stem: str, *,
                        waters: int = 3) -> tuple[Path, Path, np.ndarray]:
    """:func:`martini_model` of ``traj`` as PDB + DCD, and its BB positions."""
    model, backbone = martini_model(traj, waters=waters)
    pdb, dcd = folder / f"{stem}.pdb", folder / f"{stem}.dcd"
    model[0].save_pdb(str(pdb))
    model.save_dcd(str(dcd))
    return pdb, dcd, backbone
