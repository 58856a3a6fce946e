"""The frames :func:`~seqdance.features.md.extract_md` measures, from each kind of input (DESIGN §3, §3b).

Each stream reads its input chunk by chunk and yields :class:`FrameBatch` es:

* :class:`AllAtomFrames` — an all-atom trajectory (or conformer ensemble): the protein atoms made whole across
  periodic boundaries and checked for peptide bonds split by the box; with ``hydrogens`` given and the input
  lacking them (PED conformers, X-ray ensembles), every frame gets hydrogens at the given pH
  (:class:`~seqdance.features.hydrogens.HydrogenAdder`, heavy atoms untouched);
* :class:`TraceFrames` — a one-bead-per-residue (Cα) trace (:mod:`seqdance.features.coarse_grained`): the trace
  itself and, with ``backmap`` given, all-atom frames rebuilt from it (PULCHRA,
  :mod:`seqdance.features.backmapping`) with hydrogens added and every atom but Cα relaxed (the clashes
  PULCHRA leaves in disordered chains; docs/coarse_grained.md).

A stream's ``atoms`` (the :class:`ProteinTopology` of the all-atom frames) is known after its first batch: for
protonated and back-mapped inputs the first frame decides the atoms (protonation states, rebuilt side chains).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.md_properties import dihedral_rows
from seqdance.features.md_topology import ProteinTopology, build_protein_topology
from seqdance.features.options import DEFAULT_HYDROGEN_PH, HYDROGEN_FORCEFIELDS, InputKind
from seqdance.features.periodic import make_whole, spanning_bonds
from seqdance.features.trajectory_io import FrameChunk, FrameSource, LoadedTopology

log = logging.getLogger(__name__)

#: A peptide C-N longer than this (nm) in a frame whose first frame had it bonded: protein split by PBC.
BROKEN_BOND_NM = 0.5
#: Minimum fraction of non-proline backbone N carrying a hydrogen for the input to count as having hydrogens.
MIN_AMIDE_H_COVERAGE = 0.5
#: Frames rebuilt (back-mapping, hydrogens) per batch: each costs ~0.1-10 s, so batches stay short for progress.
EXPENSIVE_BATCH = 16


@dataclass(frozen=True)
class HydrogenOptions:
    """How hydrogens are added (:class:`~seqdance.features.hydrogens.HydrogenAdder`)."""

    ph: float = DEFAULT_HYDROGEN_PH
    forcefield: str = "amber14"  # or "none": geometric placement
    threads: int | None = 1  # OpenMM threads: one is bit-reproducible (hydrogens module doc)

    def __post_init__(self) -> None:
        if self.forcefield not in HYDROGEN_FORCEFIELDS:
            raise InputError(f"hydrogen force field must be one of {HYDROGEN_FORCEFIELDS}, got {self.forcefield!r}")
        if not np.isfinite(self.ph) or not 0.0 <= float(self.ph) <= 14.0:
            raise InputError(f"pH for adding hydrogens must lie in [0, 14], got {self.ph}")

    def adder(self, topology: md.Topology, first_frame: np.ndarray, *, relax: str, source: str):
        from seqdance.features.hydrogens import HydrogenAdder

        return HydrogenAdder(topology, first_frame, ph=float(self.ph),
                             forcefield=None if self.forcefield == "none" else self.forcefield,  # type: ignore[arg-type]
                             relax=relax, threads=self.threads, source=source)  # type: ignore[arg-type]


@dataclass
class FrameBatch:
    """Consecutive frames of one source."""

    frames: md.Trajectory | None  # all-atom frames, protein whole (topology: the stream's ``atoms``); None: trace only
    trace: np.ndarray | None  # (F, N, 3) nm bead (Cα) positions of a one-bead input, made whole; None otherwise
    frame_numbers: np.ndarray  # (F,) index of each frame in its source file (start, stride applied)
    source: str

    def __len__(self) -> int:
        return len(self.frame_numbers)


def amide_hydrogen_coverage(protein: ProteinTopology, first_frame: np.ndarray) -> float:
    """Fraction of non-proline backbone N that carry a hydrogen in ``first_frame`` (~1 with hydrogens, 0 without)."""
    from seqdance.features.contact_geometry import build_contact_model

    return build_contact_model(protein, first_frame).backbone_hydrogen_coverage()


def _protonated(adder, source: str, reference: ProteinTopology) -> ProteinTopology:
    """The protein description of a hydrogen adder's topology; its residues must be ``reference``'s."""
    atoms = build_protein_topology(adder.topology, source=source)
    if atoms.sequence != reference.sequence:  # pragma: no cover - Modeller keeps residues
        raise InputError(f"{source}: adding hydrogens changed the residues ({reference.sequence} -> {atoms.sequence})")
    return atoms


class AllAtomFrames:
    """Whole all-atom frames of ``sources`` (replicas, pooled), optionally given hydrogens (module doc)."""

    def __init__(self, loaded: LoadedTopology, protein: ProteinTopology, sources: Sequence[FrameSource], *,
                 start: int, stop: int | None, stride: int, chunk_frames: int,
                 hydrogens: HydrogenOptions | None = None) -> None:
        self.loaded, self.protein, self.sources = loaded, protein, list(sources)
        self.start, self.stop, self.stride, self.chunk_frames = start, stop, stride, chunk_frames
        self.hydrogens = hydrogens
        self.atoms: ProteinTopology | None = None
        self.input_kind: InputKind = "all_atom"
        self._bonds: np.ndarray | None = None
        self._peptide_bonds: np.ndarray | None = None
        self._adder = None

    def _setup(self, first: FrameChunk) -> None:
        """From the first chunk: the bonds that make the protein whole, its peptide bonds, and the hydrogen step."""
        top = self.protein.topology
        self._bonds = spanning_bonds(top, first.xyz[0])
        box = None if first.box is None else first.box[:1]
        first_frame = self._whole(FrameChunk(first.xyz[:1].copy(), box)).xyz[0]
        phi, _ = dihedral_rows("phi", md.Trajectory(first_frame[None].copy(), top), self.protein.atom_residue,
                               first_frame)
        self._peptide_bonds = phi[:, :2]
        self.atoms = self.protein
        if self.hydrogens is not None:
            coverage = amide_hydrogen_coverage(self.protein, first_frame)
            if coverage < MIN_AMIDE_H_COVERAGE:
                self._adder = self.hydrogens.adder(top, first_frame, relax="hydrogens", source=self.loaded.path)
                self.atoms = _protonated(self._adder, self.loaded.path, self.protein)
                self.input_kind = "all_atom_protonated"
            else:
                log.info("%s: the input has hydrogens (%.0f%% of backbone N carry one); none added",
                         self.loaded.path, 100 * coverage)

    def _whole(self, chunk: FrameChunk) -> md.Trajectory:
        traj = md.Trajectory(chunk.xyz, self.protein.topology)
        if chunk.box is not None:
            traj.unitcell_vectors = chunk.box
            make_whole(traj, self._bonds)
        return traj

    def _check_whole(self, xyz: np.ndarray, source: str, frame_numbers: np.ndarray) -> None:
        pairs = self._peptide_bonds
        if pairs is None or not len(pairs):
            return
        bond = np.linalg.norm(xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]], axis=-1)
        broken = np.flatnonzero((bond > BROKEN_BOND_NM).any(axis=1))
        if broken.size:
            raise InputError(
                f"{source}: frame {int(frame_numbers[broken[0]])}: the protein is split across the periodic box (a "
                f"peptide bond is {bond[broken[0]].max():.2f} nm long); make molecules whole first, e.g. gmx trjconv "
                "-pbc mol"
            )

    def __iter__(self) -> Iterator[FrameBatch]:
        for source in self.sources:
            seen = 0
            for chunk in source.chunks(self.protein.atom_indices, start=self.start, stop=self.stop,
                                       stride=self.stride, chunk_frames=self.chunk_frames):
                if self._bonds is None:
                    self._setup(chunk)
                numbers = self.start + (seen + np.arange(len(chunk))) * self.stride
                seen += len(chunk)
                traj = self._whole(chunk)
                self._check_whole(traj.xyz, source.name, numbers)
                if self._adder is None:
                    yield FrameBatch(traj, None, numbers, source.name)
                    continue
                assert self.atoms is not None
                self._adder.source = source.name
                for lo in range(0, len(traj.xyz), EXPENSIVE_BATCH):
                    part = numbers[lo:lo + EXPENSIVE_BATCH]
                    xyz = np.stack([self._adder.frame(traj.xyz[lo + k], int(n)) for k, n in enumerate(part)])
                    yield FrameBatch(md.Trajectory(xyz[:, self.atoms.atom_indices], self.atoms.topology), None,
                                     part, source.name)
            if seen == 0:
                raise InputError(f"{source.name}: no frames selected (start={self.start}, stop={self.stop}, "
                                 f"stride={self.stride})")


class TraceFrames:
    """A one-bead-per-residue trace (or a Martini model's BB beads, ``trace_kind="martini"``), and with
    ``backmap`` all-atom frames rebuilt from it (module doc)."""

    def __init__(self, loaded: LoadedTopology, beads: ProteinTopology,
                 trajectories: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None, *,
                 start: int, stop: int | None, stride: int, chunk_frames: int, backmap: str | None = None,
                 hydrogens: HydrogenOptions | None = None, trace_kind: InputKind = "calpha") -> None:
        self.loaded, self.protein, self.trajectories = loaded, beads, trajectories
        self.start, self.stop, self.stride, self.chunk_frames = start, stop, stride, chunk_frames
        self.atoms: ProteinTopology | None = None
        self.input_kind: InputKind = "backmapped" if backmap else trace_kind
        self._mapper = None
        self._hydrogens = hydrogens or HydrogenOptions()
        self._adder = None
        if backmap:
            if self._hydrogens.forcefield == "none":
                raise InputError(f"{loaded.path}: back-mapped frames are relaxed with a force field (every atom but "
                                 "Cα, to remove the clashes PULCHRA leaves); the hydrogen force field cannot be "
                                 "'none' with back-mapping")
            from seqdance.features.backmapping import Backmapper

            self._mapper = Backmapper(beads, engine=backmap, source=loaded.path)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[FrameBatch]:
        from seqdance.features.coarse_grained import iter_bead_chunks

        for _, source, first, xyz in iter_bead_chunks(self.loaded, self.trajectories, start=self.start,
                                                      stop=self.stop, stride=self.stride,
                                                      chunk_frames=self.chunk_frames):
            numbers = first + np.arange(len(xyz)) * self.stride
            if self._mapper is None:
                yield FrameBatch(None, xyz, numbers, source)
                continue
            for lo in range(0, len(xyz), EXPENSIVE_BATCH):
                yield self._rebuild(xyz[lo:lo + EXPENSIVE_BATCH], numbers[lo:lo + EXPENSIVE_BATCH], source)

    def _rebuild(self, trace: np.ndarray, numbers: np.ndarray, source: str) -> FrameBatch:
        mapper = self._mapper
        assert mapper is not None
        mapper.source = source  # errors name the trajectory file the frame comes from
        heavy = [mapper.frame(trace[k], int(n)) for k, n in enumerate(numbers)]
        if self._adder is None:
            self._adder = self._hydrogens.adder(mapper.topology, heavy[0], relax="all_but_calpha", source=source)
            self.atoms = _protonated(self._adder, source, self.protein)
        self._adder.source = source
        atoms = self.atoms
        assert atoms is not None
        xyz = np.stack([self._adder.frame(h, int(n)) for h, n in zip(heavy, numbers)])
        return FrameBatch(md.Trajectory(xyz[:, atoms.atom_indices], atoms.topology), trace, numbers, source)
