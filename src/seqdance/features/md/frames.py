"""The frames :func:`~seqdance.features.md.extract_md` measures, from each kind of input
(docs/design.md#md-features, #missing-properties).

:func:`open_frames` is the one entry: it reads the topology, recognises the input kind, checks that the options
apply to it and opens the trajectories. The stream it returns reads its input chunk by chunk and yields
:class:`FrameBatch` es:

* :class:`AllAtomFrames` — an all-atom trajectory (or conformer ensemble): the protein atoms made whole across
  periodic boundaries and checked for peptide bonds split by the box; with ``hydrogens`` given and the input
  lacking them (PED conformers, X-ray ensembles), every frame gets hydrogens at the given pH
  (:class:`~seqdance.features.inputs.hydrogens.HydrogenAdder`, heavy atoms untouched);
* :class:`TraceFrames` — a one-bead-per-residue (Cα) trace (:mod:`seqdance.features.inputs.coarse_grained`): the trace
  itself and, with ``backmap`` given, all-atom frames rebuilt from it (PULCHRA,
  :mod:`seqdance.features.inputs.backmapping`) with hydrogens added and every atom but Cα relaxed (the clashes
  PULCHRA leaves in disordered chains; docs/coarse_grained.md).

A stream's ``atoms`` (the :class:`ProteinTopology` of the all-atom frames) is known after its first batch: for
protonated and back-mapped inputs the first frame decides the atoms (protonation states, rebuilt side chains).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.coarse_grained import bead_topology, check_martini_backbone, trace_beads
from seqdance.features.inputs.files import FrameChunk, FrameSource, LoadedTopology, check_coordinates
from seqdance.features.inputs.periodic import make_whole, spanning_bonds
from seqdance.features.inputs.protein import ProteinTopology, build_protein_topology
from seqdance.features.inputs.spec import InputSpecLike
from seqdance.features.inputs.topology import load_topology
from seqdance.features.inputs.trajectories import count_frames, open_sources
from seqdance.features.md.properties import dihedral_rows
from seqdance.features.options import DEFAULT_HYDROGEN_PH, InputKind, MdOptions

log = logging.getLogger(__name__)

#: A peptide C-N longer than this (nm) in a frame whose first frame had it bonded: protein split by PBC.
BROKEN_BOND_NM = 0.5
#: Minimum fraction of non-proline backbone N carrying a hydrogen for the input to count as having hydrogens.
MIN_AMIDE_H_COVERAGE = 0.5
#: Frames rebuilt (back-mapping, hydrogens) per batch: each costs ~0.1-10 s, so batches stay short for progress.
EXPENSIVE_BATCH = 16


@dataclass(frozen=True)
class HydrogenOptions:
    """How hydrogens are added (:class:`~seqdance.features.inputs.hydrogens.HydrogenAdder`); the values come from
    :class:`~seqdance.features.options.MdOptions`, which checked them."""

    ph: float = DEFAULT_HYDROGEN_PH
    forcefield: str = "amber14"  # or "none": geometric placement
    threads: int | None = 1  # OpenMM threads: one is bit-reproducible (hydrogens module doc)

    @classmethod
    def of(cls, options: MdOptions) -> HydrogenOptions:
        return cls(ph=options.hydrogen_ph, forcefield=options.hydrogen_forcefield)

    def adder(self, topology: md.Topology, first_frame: np.ndarray, *, relax: str, source: str):
        from seqdance.features.inputs.hydrogens import HydrogenAdder

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
    from seqdance.features.md.contact_geometry import build_contact_model

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
        self.total: int | None = count_frames(self.sources, start, stop, stride)  # selected frames, when known
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

    def _describe_atom(self, k: int) -> str:
        atom = self.protein.topology.atom(k)
        row = int(self.protein.atom_residue[k])
        where = self.protein.describe_residue(row) if row >= 0 else f"{atom.residue.name}{atom.residue.resSeq}"
        return f"atom {atom.name} of {where}"

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
                numbers = self.start + (seen + np.arange(len(chunk))) * self.stride
                check_coordinates(chunk.xyz, numbers, source.name, self._describe_atom)
                if self._bonds is None:
                    self._setup(chunk)
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
                 trajectories: InputSpecLike | Sequence[InputSpecLike] | None, *,
                 start: int, stop: int | None, stride: int, chunk_frames: int, backmap: str | None = None,
                 hydrogens: HydrogenOptions | None = None, trace_kind: InputKind = "calpha") -> None:
        self.loaded, self.protein, self.trajectories = loaded, beads, trajectories
        self.start, self.stop, self.stride, self.chunk_frames = start, stop, stride, chunk_frames
        self.atoms: ProteinTopology | None = None
        self.input_kind: InputKind = "backmapped" if backmap else trace_kind
        self.sources = open_sources(loaded, trajectories)  # checked against the topology before any frame is read
        self.total: int | None = count_frames(self.sources, start, stop, stride)
        self._mapper = None
        self._hydrogens = hydrogens or HydrogenOptions()
        self._adder = None
        if backmap:
            from seqdance.features.inputs.backmapping import Backmapper

            self._mapper = Backmapper(beads, engine=backmap, source=loaded.path)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[FrameBatch]:
        from seqdance.features.inputs.coarse_grained import iter_bead_chunks

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


def open_frames(topology: InputSpecLike, trajectories: InputSpecLike | Sequence[InputSpecLike] | None = None,
                options: MdOptions | None = None) -> AllAtomFrames | TraceFrames:
    """The frames :func:`~seqdance.features.md.extract_md` measures, for any input kind.

    Reads the topology, recognises what it is (all atoms; one bead per residue; a Martini model's backbone beads),
    checks that ``options`` apply to it (back-mapping needs a one-bead trace, hydrogens need atoms) and opens the
    trajectories (``None``: the topology file's own models), checked against the topology. The stream's
    ``input_kind`` says what it gives, ``protein`` the residues that get rows, ``total`` the selected frames
    when the files tell it; iterating it yields :class:`FrameBatch` es.
    """
    options = options or MdOptions()
    loaded = load_topology(topology)
    selection = {"start": options.start, "stop": options.stop, "stride": options.stride,
                 "chunk_frames": options.chunk_frames}
    hydrogens = HydrogenOptions.of(options)  # one OpenMM thread: reproducible
    traced = trace_beads(loaded.topology)
    if traced is not None:
        beads, trace_kind = traced
        protein = bead_topology(loaded.topology, source=loaded.path, beads=beads)
        if trace_kind == "martini" and (options.backmap is not None or options.add_hydrogens):
            raise InputError(f"{loaded.path}: a Martini model is read by its backbone (BB) beads, which are not Cα "
                             "positions, so PULCHRA cannot rebuild it and it has no atoms to add hydrogens to; "
                             "back-map it with a Martini tool (e.g. backward) and give the all-atom frames instead")
        if options.add_hydrogens and options.backmap is None:
            raise InputError(f"{loaded.path}: a one-bead-per-residue topology has no atoms to add hydrogens to; "
                             "back-map it first (backmap='pulchra'; CLI: --backmap pulchra), which adds them")
        return TraceFrames(loaded, protein, trajectories, **selection, backmap=options.backmap, hydrogens=hydrogens,
                           trace_kind=trace_kind)
    if options.backmap is not None:
        multi = next(r for r in loaded.topology.residues if r.n_atoms != 1)
        raise InputError(f"{loaded.path}: back-mapping rebuilds atoms from a one-bead-per-residue (Cα) trace, but "
                         f"this topology has all atoms (residue {multi.name}{multi.resSeq} has {multi.n_atoms})")
    check_martini_backbone(loaded.topology, source=loaded.path)
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes, source=loaded.path)
    return AllAtomFrames(loaded, protein, open_sources(loaded, trajectories), **selection,
                         hydrogens=hydrogens if options.add_hydrogens else None)
