"""Dynamic features of an MD trajectory (DESIGN §3): :func:`extract_md` (returns :class:`~seqdance.features.results.MdFeatures`).

Reads the trajectory in chunks (bounded memory) and, per chunk, makes the protein whole across periodic
boundaries, finds the nine interaction types natively (:mod:`seqdance.features.interactions`) on the coordinates
as written, superposes the frames on the first one (Cα), then accumulates the Cα covariance (RMSF, correlation),
the SASA (:mod:`seqdance.features.sasa`: MDTraj's Shrake-Rupley numbers, frames in parallel, or on a GPU) and
MDTraj's DSSP and dihedrals. Several trajectories (replicas of one system) pool their frames.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import mdtraj as md
import numpy as np
from tqdm.auto import tqdm

from seqdance.features.contact_geometry import ContactCriteria, build_contact_model
from seqdance.features.interactions import ContactFrequencies, detect_contacts
from seqdance.features.md_properties import (
    DIHEDRAL_FUNCTIONS,
    CoordinateCovariance,
    DihedralHistogram,
    RunningMoments,
    dihedral_rows,
    dssp_counts,
)
from seqdance.features.md_topology import ProteinTopology, build_protein_topology
from seqdance.features.options import (
    FREQUENCIES,
    MISSING_HYDROGENS,
    SASA_ENGINES,
    Frequency,
    MissingHydrogens,
    SasaEngine,
)
from seqdance.features.periodic import make_whole, spanning_bonds
from seqdance.features.residue_sasa import ResidueSasa
from seqdance.features.results import MdFeatures
from seqdance.features.trajectory_io import FrameChunk, count_frames, load_topology, open_sources
from seqdance.schema import INTERACTION_NAMES, PROPERTY_BY_NAME, properties_of_kind

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Output key of each MD property (:attr:`seqdance.schema.Property.raw_key`: ``rmsf_nor`` is returned raw as ``rmsf``).
MD_FEATURE_KEYS: dict[str, str] = {p.name: p.raw_key for p in properties_of_kind("md")}
_ANGLES: tuple[str, ...] = tuple(name for name in MD_FEATURE_KEYS if name in DIHEDRAL_FUNCTIONS)
_HBOND_TYPES: tuple[str, ...] = tuple(n for n in INTERACTION_NAMES if n.startswith("hb"))
#: A peptide C-N longer than this (nm) in a frame whose first frame had it bonded: protein split by PBC.
_BROKEN_BOND_NM = 0.5
#: Frames folded into the accumulators per step (at least; more with many SASA threads): the progress bar
#: advances this often. The result does not depend on it, as it does not on ``chunk_frames``.
PROGRESS_FRAMES = 10
#: Minimum fraction of non-proline backbone N carrying a hydrogen for H-bonds to be computed.
_MIN_AMIDE_H_COVERAGE = 0.5


def _as_list(trajectory: PathLike | Sequence[PathLike] | None) -> list[str] | None:
    if trajectory is None:
        return None
    if isinstance(trajectory, (str, os.PathLike)):
        return [os.fspath(trajectory)]
    paths = [os.fspath(t) for t in trajectory]
    return paths or None


def _check_options(frequency: str, stride: int, start: int, stop: int | None, chunk_frames: int,
                   missing_hydrogens: str, sasa: str, threads: int | None) -> None:
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if int(start) < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if stop is not None and int(stop) <= int(start):
        raise ValueError(f"stop ({stop}) must be greater than start ({start})")
    if int(chunk_frames) < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if missing_hydrogens not in MISSING_HYDROGENS:
        raise ValueError(f"missing_hydrogens must be one of {MISSING_HYDROGENS}, got {missing_hydrogens!r}")
    if sasa not in SASA_ENGINES:
        raise ValueError(f"sasa must be one of {SASA_ENGINES}, got {sasa!r}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")


class _Accumulators:
    """Everything extract_md folds frames into; created from the first chunk."""

    def __init__(self, protein: ProteinTopology, first: FrameChunk, frequency: Frequency,
                 criteria: ContactCriteria | None, missing_hydrogens: MissingHydrogens, source: str,
                 sasa: ResidueSasa) -> None:
        self.protein = protein
        n = protein.n_residues
        top = protein.topology
        self.whole_bonds = spanning_bonds(top, first.xyz[0])
        first_box = None if first.box is None else first.box[:1]
        first_frame = self.whole_trajectory(FrameChunk(first.xyz[:1].copy(), first_box)).xyz[0]
        self.reference = md.Trajectory(first_frame[None].copy(), top)
        self.ca = np.array([next(a.index for a in top.residue(int(r)).atoms if a.name == "CA")
                            for r in protein.residue_rows], dtype=np.int64)
        self.contact_model = build_contact_model(protein, first_frame, criteria)
        coverage = self.contact_model.backbone_hydrogen_coverage()
        self.with_hbonds = coverage >= _MIN_AMIDE_H_COVERAGE
        if not self.with_hbonds and missing_hydrogens == "error":
            raise ValueError(
                f"{source}: the protein has no hydrogens (only {coverage:.0%} of backbone N carry one); hydrogen "
                "bonds need them. Use a topology with hydrogens (e.g. protonate and re-simulate, or the "
                "simulation's own all-atom topology), or pass missing_hydrogens='skip' (CLI: "
                "--missing-hydrogens skip) to return NaN H-bond maps"
            )
        self.angle_indices = {}
        for kind in _ANGLES:
            self.angle_indices[kind] = dihedral_rows(kind, self.reference, protein.atom_residue, first_frame)
        phi_idx, _ = self.angle_indices.get("phi", (np.zeros((0, 4), dtype=np.int64), None))
        self.peptide_bonds = phi_idx[:, :2]
        self.sasa_engine = sasa
        self.sasa = RunningMoments()
        self.ss = np.zeros((n, len(PROPERTY_BY_NAME["ss"].labels)), dtype=np.int64)
        self.hist = {kind: DihedralHistogram(n) for kind in _ANGLES}
        self.ca_cov = CoordinateCovariance()
        self.contacts = ContactFrequencies(self.contact_model, n, frequency)
        self.n_frames = 0

    def whole_trajectory(self, chunk: FrameChunk) -> md.Trajectory:
        """The chunk as an MDTraj trajectory with the protein made whole across periodic boundaries."""
        traj = md.Trajectory(chunk.xyz, self.protein.topology)
        if chunk.box is not None:
            traj.unitcell_vectors = chunk.box
            make_whole(traj, self.whole_bonds)
        return traj

    def check_whole(self, xyz: np.ndarray, source: str, first_index: int, stride: int) -> None:
        if not len(self.peptide_bonds):
            return
        bond = np.linalg.norm(xyz[:, self.peptide_bonds[:, 0]] - xyz[:, self.peptide_bonds[:, 1]], axis=-1)
        broken = np.flatnonzero((bond > _BROKEN_BOND_NM).any(axis=1))
        if broken.size:
            frame = first_index + int(broken[0]) * stride
            raise ValueError(
                f"{source}: frame {frame}: the protein is split across the periodic box (a peptide bond is "
                f"{bond[broken[0]].max():.2f} nm long); make molecules whole first, e.g. gmx trjconv -pbc mol"
            )

    def add(self, traj: md.Trajectory, frame_numbers: np.ndarray, source: str) -> None:
        protein = self.protein
        xyz = traj.xyz
        # Contacts on the coordinates as written (as GetContacts), before superposition rotates them.
        self.contacts.add(detect_contacts(self.contact_model, xyz, with_hbonds=self.with_hbonds), len(xyz))
        traj.superpose(self.reference, 0, atom_indices=self.ca)
        self.ca_cov.add(traj.xyz[:, self.ca])
        # Shrake-Rupley's fixed sphere-point grid is not rotation invariant: like the reference, use the
        # superposed frames.
        self.sasa.add(self.sasa_engine(traj.xyz, frame_numbers=frame_numbers, where=source))
        self.ss += dssp_counts(traj, protein.residue_rows)
        for kind, (indices, rows) in self.angle_indices.items():
            if len(indices):
                self.hist[kind].add(rows, md.compute_dihedrals(traj, indices))
        self.n_frames += len(xyz)

    def result(self) -> dict[str, np.ndarray]:
        n_frames = self.n_frames
        out: dict[str, np.ndarray] = {
            MD_FEATURE_KEYS["sasa_mean"]: self.sasa.mean,
            MD_FEATURE_KEYS["sasa_std"]: self.sasa.std,
            MD_FEATURE_KEYS["rmsf_nor"]: self.ca_cov.rmsf(),
            MD_FEATURE_KEYS["ss"]: self.ss / n_frames,
        }
        for kind in _ANGLES:
            out[MD_FEATURE_KEYS[kind]] = self.hist[kind].result(n_frames)
        out[MD_FEATURE_KEYS["corr"]] = self.ca_cov.correlation()
        contacts = self.contacts.result()
        if not self.with_hbonds:
            for name in _HBOND_TYPES:
                contacts[name] = np.full_like(contacts[name], np.nan)
        out.update({MD_FEATURE_KEYS[name]: contacts[name] for name in INTERACTION_NAMES})
        return out


def extract_md(
    topology: PathLike,
    trajectory: PathLike | Sequence[PathLike] | None = None,
    *,
    frequency: Frequency = "reference",
    stride: int = 1,
    start: int = 0,
    stop: int | None = None,
    chunk_frames: int = 100,
    progress: bool = False,
    missing_hydrogens: MissingHydrogens = "error",
    criteria: ContactCriteria | None = None,
    sasa: SasaEngine = "auto",
    device: str | None = None,
    threads: int | None = None,
) -> MdFeatures:
    """Raw MD features of a protein trajectory (DESIGN §3); what it returns is :class:`MdFeatures`.

    ``topology``: any topology MDTraj reads (PDB, PSF, GRO, PRMTOP, ...), a GROMACS TPR (via MDAnalysis) or an
    mdCATH HDF5 file. ``trajectory``: one path or a list (replicas, frames pooled); ``None`` uses the frames of
    the topology file itself (multi-model PDB, mdCATH file). Frames ``start:stop:stride`` of every trajectory
    are used. ``frequency``: "reference" (atom-pair records per frame, as the released data) or "fraction"
    (fraction of frames with a contact, symmetric). Without hydrogens, H-bonds are an error unless
    ``missing_hydrogens="skip"`` (H-bond maps are then NaN).

    SASA (:class:`seqdance.features.residue_sasa.ResidueSasa`): ``sasa="auto"`` computes MDTraj's Shrake-Rupley numbers
    with the compiled kernel on CPU (frames in parallel on ``threads`` cores, default all) or with torch when
    ``device`` is a GPU ("cuda", "cuda:1", "auto"); ``"numba"``/``"torch"`` force one; ``"mdtraj"`` calls MDTraj
    one frame at a time (the previous path, for comparison; same numbers, several times slower).
    """
    _check_options(frequency, stride, start, stop, chunk_frames, missing_hydrogens, sasa, threads)
    sasa_device = None
    if device is not None:
        from seqdance.devices import resolve_device

        sasa_device = str(resolve_device(device))
    loaded = load_topology(topology)
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes, source=loaded.path)
    sasa_engine = ResidueSasa(protein.topology, protein.residue_rows, engine=sasa, device=sasa_device,
                              threads=threads)
    sources = open_sources(loaded, _as_list(trajectory))
    total = count_frames(sources, start, stop, stride)

    acc: _Accumulators | None = None
    # frames folded in per step: small for a moving bar, a few per thread so SASA keeps every core busy
    block = max(PROGRESS_FRAMES, 2 * (threads or os.cpu_count() or 1))
    with tqdm(total=total, disable=not progress, unit="frame", desc="features md") as bar:
        for source in sources:
            seen = 0
            for chunk in source.chunks(protein.atom_indices, start=start, stop=stop, stride=stride,
                                       chunk_frames=chunk_frames):
                if acc is None:
                    acc = _Accumulators(protein, chunk, frequency, criteria, missing_hydrogens, loaded.path,
                                        sasa_engine)
                traj = acc.whole_trajectory(chunk)
                acc.check_whole(traj.xyz, source.name, start + seen * stride, stride)
                frames = start + (seen + np.arange(len(chunk))) * stride
                for lo in range(0, len(chunk), block):  # small steps, so that the bar moves every few frames
                    acc.add(md.Trajectory(traj.xyz[lo:lo + block], traj.topology), frames[lo:lo + block],
                            source.name)
                    bar.update(min(block, len(chunk) - lo))
                seen += len(chunk)
            if seen == 0:
                raise ValueError(f"{source.name}: no frames selected (start={start}, stop={stop}, stride={stride})")
    assert acc is not None
    if acc.n_frames < 2:
        raise ValueError(
            f"{loaded.path}: only {acc.n_frames} frame selected; MD features need at least 2 frames "
            "(fluctuations and frequencies over a trajectory)"
        )
    log.info("%s: %d residues, %d frames from %d trajectories", loaded.path, protein.n_residues, acc.n_frames,
             len(sources))
    result: dict[str, Any] = acc.result()
    result.update(
        sequence=protein.sequence,
        residue_ids=protein.residue_ids,
        residue_names=np.array(protein.residue_names),
        chain_lengths=protein.chain_lengths,
        chain_breaks=protein.chain_breaks,
        n_frames=int(acc.n_frames),
        frequency=str(frequency),
    )
    return cast(MdFeatures, result)
