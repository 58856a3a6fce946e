"""Per-residue SASA by the engine a user chose: the compiled kernel (:mod:`seqdance.features.md.sasa`), its torch twin
for GPUs (:mod:`seqdance.features.md.sasa_torch`) or MDTraj's per-frame ``shrake_rupley`` (the previous path)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqdance.errors import InputError
from seqdance.features.md.sasa import atom_radii, residue_sums, sasa_atoms
from seqdance.features.options import SASA_ENGINES, SasaEngine


def resolve_engine(engine: str, device: str | None) -> str:
    """The concrete engine for ``engine`` on ``device``: "auto" is numba on CPU, torch on any other device."""
    if engine not in SASA_ENGINES:
        raise InputError(f"SASA engine must be one of {SASA_ENGINES}, got {engine!r}")
    on_cpu = device is None or str(device) == "cpu"
    if engine == "auto":
        return "numba" if on_cpu else "torch"
    if not on_cpu and engine != "torch":
        raise InputError(f"SASA engine {engine!r} runs on the CPU only; use engine 'torch' (or 'auto') for "
                         f"device {device!r}")
    return engine


class ResidueSasa:
    """Per-residue SASA (nm²) of chosen residues for one topology, by the chosen engine.

    ``engine``: "numba" (CPU, frames in parallel on ``threads`` cores), "torch" (on ``device``: cpu, cuda, ...),
    "mdtraj" (MDTraj's ``shrake_rupley``, one frame per call: the previous path) or "auto" (numba on CPU, torch
    on another device). numba and torch are bit-identical to each other and to MDTraj's single-frame call on the
    tested systems; per-residue sums are accumulated in float32 in atom order as MDTraj does.
    """

    def __init__(self, topology, residue_rows: np.ndarray, *, engine: SasaEngine = "auto",
                 device: str | None = None, threads: int | None = None) -> None:
        self.engine = resolve_engine(engine, device)
        self.device = device
        self.threads = threads
        self.topology = topology
        self.residue_rows = np.asarray(residue_rows, dtype=np.int64)
        self.atom_residue = np.array([a.residue.index for a in topology.atoms], dtype=np.int64)
        self.n_residues = int(topology.n_residues)
        if self.engine != "mdtraj":
            self.radii = atom_radii(topology)
            self.atom_names = [str(a) for a in topology.atoms]

    def atoms(self, xyz: np.ndarray, *, frame_numbers: Sequence[int] | None = None, where: str = "") -> np.ndarray:
        """(F, N) float32 per-atom SASA of the frames ``xyz`` (F, N, 3) nm (numba or torch engine)."""
        if self.engine == "mdtraj":
            raise InputError("per-atom areas come from the 'numba' or 'torch' engine, not 'mdtraj'")
        if self.engine == "torch":
            from seqdance.features.md.sasa_torch import sasa_atoms_torch

            return sasa_atoms_torch(xyz, self.radii, device=self.device or "cpu", atom_names=self.atom_names,
                                    frame_numbers=frame_numbers, where=where)
        return sasa_atoms(xyz, self.radii, threads=self.threads, atom_names=self.atom_names,
                          frame_numbers=frame_numbers, where=where)

    def __call__(self, xyz: np.ndarray, *, frame_numbers: Sequence[int] | None = None,
                 where: str = "") -> np.ndarray:
        """(F, len(residue_rows)) float64 SASA per residue of the frames ``xyz`` (F, N, 3) nm."""
        xyz = np.asarray(xyz)
        if self.engine == "mdtraj":
            import mdtraj as md

            from seqdance.features.md.properties import sasa_per_residue

            return sasa_per_residue(md.Trajectory(xyz, self.topology), self.residue_rows)
        per_residue = residue_sums(self.atoms(xyz, frame_numbers=frame_numbers, where=where), self.atom_residue,
                                   self.n_residues)
        return per_residue[:, self.residue_rows].astype(np.float64)
