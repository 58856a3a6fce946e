"""Dynamic features of an MD trajectory (DESIGN §3): :func:`extract_md` (returns :class:`~seqdance.features.results.MdFeatures`).

Reads the trajectory in chunks (bounded memory; the frames of each input kind come from
:mod:`seqdance.features.md_frames`: made whole across periodic boundaries, and for hydrogen-less or one-bead
inputs given hydrogens or back-mapped) and, per chunk, finds the nine interaction types natively
(:mod:`seqdance.features.interactions`) on the coordinates as written, superposes the frames on the first one
(Cα), then accumulates the Cα covariance (RMSF, correlation), the SASA (:mod:`seqdance.features.sasa`: MDTraj's
Shrake-Rupley numbers, frames in parallel, or on a GPU), MDTraj's DSSP and dihedrals, and the per-chain
conformational properties of the Cα trace (:mod:`seqdance.features.conformation`). Several trajectories
(replicas of one system) pool their frames. A one-bead (Cα) trace gives its own RMSF, correlation and
conformation; what an input cannot give is missing (NaN, listed), never zero (DESIGN §3b).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, cast

import mdtraj as md
import numpy as np
from tqdm.auto import tqdm

from seqdance.errors import InputError
from seqdance.features.coarse_grained import (
    CalphaFluctuations,
    bead_topology,
    check_martini_backbone,
    trace_beads,
)
from seqdance.features.conformation import ConformationAccumulator, conformation_arrays
from seqdance.features.contact_geometry import ContactCriteria, build_contact_model
from seqdance.features.interactions import ContactFrequencies, detect_contacts
from seqdance.features.md_frames import MIN_AMIDE_H_COVERAGE, AllAtomFrames, HydrogenOptions, TraceFrames
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
    BACKMAP_ENGINES,
    BACKMAP_PROPERTY_SETS,
    BACKMAP_REPRODUCED,
    CALPHA_PROPERTIES,
    DEFAULT_HYDROGEN_PH,
    FREQUENCIES,
    MISSING_HYDROGENS,
    SASA_ENGINES,
    TRACE_INPUT_KINDS,
    BackmapEngine,
    BackmapProperties,
    Frequency,
    HydrogenForceFieldName,
    MissingHydrogens,
    SasaEngine,
)
from seqdance.features.residue_sasa import ResidueSasa
from seqdance.features.residue_sasa import resolve_engine as resolve_sasa_engine
from seqdance.features.results import MdFeatures
from seqdance.features.trajectory_io import count_frames, load_topology, open_sources
from seqdance.schema import INTERACTION_NAMES, PROPERTY_BY_NAME, properties_of_kind

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Output key of each MD property (:attr:`seqdance.schema.Property.raw_key`: ``rmsf_nor`` is returned raw as ``rmsf``).
MD_FEATURE_KEYS: dict[str, str] = {p.name: p.raw_key for p in properties_of_kind("md")}
_ANGLES: tuple[str, ...] = tuple(name for name in MD_FEATURE_KEYS if name in DIHEDRAL_FUNCTIONS)
_HBOND_TYPES: tuple[str, ...] = tuple(n for n in INTERACTION_NAMES if n.startswith("hb"))
#: Frames folded into the accumulators per step (at least; more with many SASA threads): the progress bar
#: advances this often. The result does not depend on it, as it does not on ``chunk_frames``.
PROGRESS_FRAMES = 10


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
        raise InputError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
    if int(stride) < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    if int(start) < 0:
        raise InputError(f"start must be >= 0, got {start}")
    if stop is not None and int(stop) <= int(start):
        raise InputError(f"stop ({stop}) must be greater than start ({start})")
    if int(chunk_frames) < 1:
        raise InputError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if missing_hydrogens not in MISSING_HYDROGENS:
        raise InputError(f"missing_hydrogens must be one of {MISSING_HYDROGENS}, got {missing_hydrogens!r}")
    if sasa not in SASA_ENGINES:
        raise InputError(f"sasa must be one of {SASA_ENGINES}, got {sasa!r}")
    if threads is not None and int(threads) < 1:
        raise InputError(f"threads must be >= 1, got {threads}")


class _Accumulators:
    """Everything extract_md folds all-atom frames into; created from the first (whole) frame."""

    def __init__(self, protein: ProteinTopology, first_frame: np.ndarray, frequency: Frequency,
                 criteria: ContactCriteria | None, missing_hydrogens: MissingHydrogens, source: str,
                 sasa: ResidueSasa) -> None:
        self.protein = protein
        n = protein.n_residues
        top = protein.topology
        self.reference = md.Trajectory(first_frame[None].copy(), top)
        self.ca = np.array([next(a.index for a in top.residue(int(r)).atoms if a.name == "CA")
                            for r in protein.residue_rows], dtype=np.int64)
        self.contact_model = build_contact_model(protein, first_frame, criteria)
        coverage = self.contact_model.backbone_hydrogen_coverage()
        self.with_hbonds = coverage >= MIN_AMIDE_H_COVERAGE
        if not self.with_hbonds and missing_hydrogens == "error":
            raise InputError(
                f"{source}: the protein has no hydrogens (only {coverage:.0%} of backbone N carry one); hydrogen "
                "bonds need them. Add them (add_hydrogens=True; CLI: --add-hydrogens, OpenMM at pH 7), use a "
                "topology with hydrogens (the simulation's own all-atom topology), or pass "
                "missing_hydrogens='skip' (CLI: --missing-hydrogens skip) to leave the H-bond maps missing"
            )
        self.angle_indices = {}
        for kind in _ANGLES:
            self.angle_indices[kind] = dihedral_rows(kind, self.reference, protein.atom_residue, first_frame)
        self.sasa_engine = sasa
        self.sasa = RunningMoments()
        self.ss = np.zeros((n, len(PROPERTY_BY_NAME["ss"].labels)), dtype=np.int64)
        self.hist = {kind: DihedralHistogram(n) for kind in _ANGLES}
        self.ca_cov = CoordinateCovariance()
        self.contacts = ContactFrequencies(self.contact_model, n, frequency)
        self.conformation = ConformationAccumulator(protein.chain_lengths)
        self.n_frames = 0

    def add(self, traj: md.Trajectory, frame_numbers: np.ndarray, source: str) -> None:
        protein = self.protein
        xyz = traj.xyz
        # Contacts on the coordinates as written (as GetContacts), before superposition rotates them.
        self.contacts.add(detect_contacts(self.contact_model, xyz, with_hbonds=self.with_hbonds), len(xyz))
        traj.superpose(self.reference, 0, atom_indices=self.ca)
        self.ca_cov.add(traj.xyz[:, self.ca])
        self.conformation.add(traj.xyz[:, self.ca])
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
        out.update(conformation_arrays(self.conformation.result()))
        return out

    def missing(self) -> set[str]:
        """Schema names of the properties these frames cannot give (H-bonds without hydrogens)."""
        return set() if self.with_hbonds else set(_HBOND_TYPES)


class _TraceAccumulators:
    """What a one-bead (Cα) trace gives: RMSF, movement correlation, conformational properties."""

    def __init__(self, beads: ProteinTopology) -> None:
        self.fluctuations = CalphaFluctuations()
        self.conformation = ConformationAccumulator(beads.chain_lengths)

    def add(self, trace: np.ndarray) -> None:
        self.fluctuations.add(trace)  # superposed on the first frame by all beads (= Cα), as extract_md
        self.conformation.add(trace)  # rotation and translation invariant

    @property
    def n_frames(self) -> int:
        return self.fluctuations.n_frames

    def result(self) -> dict[str, np.ndarray]:
        out = self.fluctuations.result()
        out.update(conformation_arrays(self.conformation.result()))
        return out


def missing_arrays(n_residues: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """NaN arrays of the usual shapes for the MD properties ``names`` (schema names), keyed by raw key."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        prop = PROPERTY_BY_NAME[name]
        if prop.level == "pair":
            shape: tuple[int, ...] = (n_residues, n_residues)
        else:
            shape = (n_residues,) if prop.width == 1 else (n_residues, prop.width)
        out[prop.raw_key] = np.full(shape, np.nan)
    return out


def _check_input_options(backmap: str | None, backmap_properties: str, add_hydrogens: bool) -> None:
    if backmap is not None and backmap not in BACKMAP_ENGINES:
        raise InputError(f"backmap must be one of {BACKMAP_ENGINES} (or None), got {backmap!r}")
    if backmap_properties not in BACKMAP_PROPERTY_SETS:
        raise InputError(f"backmap_properties must be one of {BACKMAP_PROPERTY_SETS}, got {backmap_properties!r}")
    if backmap is None and backmap_properties != "reproduced":
        raise InputError("backmap_properties applies to back-mapped frames; give backmap='pulchra' too")
    if not isinstance(add_hydrogens, (bool, np.bool_)):
        raise InputError(f"add_hydrogens must be True or False, got {add_hydrogens!r}")


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
    backmap: BackmapEngine | None = None,
    backmap_properties: BackmapProperties = "reproduced",
    add_hydrogens: bool = False,
    hydrogen_ph: float = DEFAULT_HYDROGEN_PH,
    hydrogen_forcefield: HydrogenForceFieldName = "amber14",
) -> MdFeatures:
    """Raw MD features of a protein trajectory (DESIGN §3, §3b); what it returns is :class:`MdFeatures`.

    ``topology``: any topology MDTraj reads (PDB, PSF, GRO, PRMTOP, ...), a GROMACS TPR (via MDAnalysis) or an
    mdCATH HDF5 file. ``trajectory``: one path or a list (replicas, frames pooled); ``None`` uses the frames of
    the topology file itself (multi-model PDB/mmCIF ensemble, mdCATH file). Frames ``start:stop:stride`` of every
    trajectory are used. ``frequency``: "reference" (atom-pair records per frame, as the released data) or
    "fraction" (fraction of frames with a contact, symmetric).

    Input kinds (``input_kind`` of the result; a property an input cannot give is NaN with its usual shape and
    listed by schema name in ``missing_properties``, never zero):

    * ``"all_atom"``: as given. Without hydrogens, H-bonds are an error unless ``missing_hydrogens="skip"``
      (hbbb/hbsb/hbss missing) or ``add_hydrogens=True``;
    * ``"all_atom_protonated"``: ``add_hydrogens=True`` on an input without hydrogens (PED conformers, X-ray
      ensembles): OpenMM adds them at ``hydrogen_ph`` with ``hydrogen_forcefield`` ("amber14", or "none" for
      geometric placement), heavy atoms untouched. An input that has hydrogens is used as it is;
    * ``"calpha"``: a one-bead-per-residue topology (detected: every residue holds one atom, named by its 3-letter
      code; CALVADOS, HPS, Cα-only models): RMSF, movement correlation and the conformational properties from
      the trace; every atom-level property missing;
    * ``"martini"``: a Martini model (several beads per residue, one backbone bead ``BB`` each; detected): the
      same properties as ``"calpha"`` from the BB beads, which sit at the centre of N, Cα, C and O rather than
      on Cα (docs/coarse_grained.md measures the difference); no back-mapping or hydrogens;
    * ``"backmapped"``: the same with ``backmap="pulchra"`` (or "pulchra-python"): every frame rebuilt to all
      atoms, given hydrogens and relaxed (every atom but Cα); RMSF, correlation and conformation still from the
      trace. ``backmap_properties="reproduced"`` keeps what back-mapping reproduces (SASA, DSSP, vdW, backbone
      H-bonds; docs/coarse_grained.md) and leaves the rest missing; ``"all"`` computes every property from the
      rebuilt frames, as the reference did.

    SASA (:class:`seqdance.features.residue_sasa.ResidueSasa`): ``sasa="auto"`` computes MDTraj's Shrake-Rupley numbers
    with the compiled kernel on CPU (frames in parallel on ``threads`` cores, default all) or with torch when
    ``device`` is a GPU ("cuda", "cuda:1", "auto"); ``"numba"``/``"torch"`` force one; ``"mdtraj"`` calls MDTraj
    one frame at a time (the previous path, for comparison; same numbers, several times slower).
    """
    _check_options(frequency, stride, start, stop, chunk_frames, missing_hydrogens, sasa, threads)
    _check_input_options(backmap, backmap_properties, add_hydrogens)
    try:
        ph = float(hydrogen_ph)
    except (TypeError, ValueError):
        raise InputError(f"hydrogen_ph must be a number, got {hydrogen_ph!r}") from None
    hydrogens = HydrogenOptions(ph=ph, forcefield=hydrogen_forcefield)  # one OpenMM thread: reproducible
    sasa_device = None
    if device is not None:
        from seqdance.devices import resolve_device

        sasa_device = str(resolve_device(device))
    resolve_sasa_engine(sasa, sasa_device)  # a bad engine/device pair fails before any frame is read
    loaded = load_topology(topology)
    trajectories = _as_list(trajectory)
    stream: AllAtomFrames | TraceFrames
    traced = trace_beads(loaded.topology)
    if traced is not None:
        beads, trace_kind = traced
        protein = bead_topology(loaded.topology, source=loaded.path, beads=beads)
        if trace_kind == "martini" and (backmap is not None or add_hydrogens):
            raise InputError(f"{loaded.path}: a Martini model is read by its backbone (BB) beads, which are not Cα "
                             "positions, so PULCHRA cannot rebuild it and it has no atoms to add hydrogens to; "
                             "back-map it with a Martini tool (e.g. backward) and give the all-atom frames instead")
        if add_hydrogens and backmap is None:
            raise InputError(f"{loaded.path}: a one-bead-per-residue topology has no atoms to add hydrogens to; "
                             "back-map it first (backmap='pulchra'; CLI: --backmap pulchra), which adds them")
        stream = TraceFrames(loaded, protein, trajectories, start=start, stop=stop, stride=stride,
                             chunk_frames=chunk_frames, backmap=backmap, hydrogens=hydrogens, trace_kind=trace_kind)
        sources = open_sources(loaded, trajectories)
    else:
        if backmap is not None:
            multi = next(r for r in loaded.topology.residues if r.n_atoms != 1)
            raise InputError(f"{loaded.path}: back-mapping rebuilds atoms from a one-bead-per-residue (Cα) trace, but "
                             f"this topology has all atoms (residue {multi.name}{multi.resSeq} has {multi.n_atoms})")
        check_martini_backbone(loaded.topology, source=loaded.path)
        protein = build_protein_topology(loaded.topology, loaded.insertion_codes, source=loaded.path)
        sources = open_sources(loaded, trajectories)
        stream = AllAtomFrames(loaded, protein, sources, start=start, stop=stop, stride=stride,
                               chunk_frames=chunk_frames, hydrogens=hydrogens if add_hydrogens else None)
    total = count_frames(sources, start, stop, stride)

    acc: _Accumulators | None = None
    trace = _TraceAccumulators(protein) if isinstance(stream, TraceFrames) else None
    # frames folded in per step: small for a moving bar, a few per thread so SASA keeps every core busy
    block = max(PROGRESS_FRAMES, 2 * (threads or os.cpu_count() or 1))
    with tqdm(total=total, disable=not progress, unit="frame", desc=f"features md ({stream.input_kind})") as bar:
        for batch in stream:
            if trace is not None and batch.trace is not None:
                trace.add(batch.trace)
            if batch.frames is None:
                bar.update(len(batch))
                continue
            if acc is None:
                atoms = stream.atoms
                assert atoms is not None
                sasa_engine = ResidueSasa(atoms.topology, atoms.residue_rows, engine=sasa, device=sasa_device,
                                          threads=threads)
                acc = _Accumulators(atoms, batch.frames.xyz[0], frequency, criteria, missing_hydrogens,
                                    loaded.path, sasa_engine)
            for lo in range(0, len(batch), block):  # small steps, so that the bar moves every few frames
                acc.add(batch.frames[lo:lo + block], batch.frame_numbers[lo:lo + block], batch.source)
                bar.update(min(block, len(batch) - lo))
    n_frames = trace.n_frames if trace is not None else (acc.n_frames if acc is not None else 0)
    if n_frames < 2:
        raise InputError(
            f"{loaded.path}: only {n_frames} frame selected; MD features need at least 2 frames "
            "(fluctuations and frequencies over a trajectory)"
        )
    log.info("%s: %d residues, %d frames from %d trajectories (%s)", loaded.path, protein.n_residues, n_frames,
             len(sources), stream.input_kind)
    missing = _missing_properties(stream.input_kind, backmap_properties, acc)
    result: dict[str, Any] = acc.result() if acc is not None else {}
    if trace is not None:
        result.update(trace.result())  # RMSF, correlation and conformation always from the trace itself
    result.update(missing_arrays(protein.n_residues, missing))
    result.update(
        sequence=protein.sequence,
        residue_ids=protein.residue_ids,
        residue_names=np.array(protein.residue_names),
        chain_lengths=protein.chain_lengths,
        chain_breaks=protein.chain_breaks,
        n_frames=int(n_frames),
        frequency=str(frequency),
        input_kind=stream.input_kind,
        missing_properties=tuple(missing),
    )
    return cast(MdFeatures, result)


def _missing_properties(input_kind: str, backmap_properties: str, acc: _Accumulators | None) -> list[str]:
    """Schema names (schema order) of the MD properties an input kind cannot give (DESIGN §3b)."""
    if input_kind in TRACE_INPUT_KINDS:
        keep = set(CALPHA_PROPERTIES)
    elif input_kind == "backmapped" and backmap_properties == "reproduced":
        keep = set(BACKMAP_REPRODUCED)
    else:
        keep = set(MD_FEATURE_KEYS)
    if acc is not None:
        keep -= acc.missing()
    return [name for name in MD_FEATURE_KEYS if name not in keep]
