"""Dynamic features of an MD trajectory (docs/design.md#md-features): :func:`extract_md` (returns
:class:`~seqdance.features.results.MdFeatures`).

Its steps: the options (:class:`~seqdance.features.options.MdOptions`), the frame stream of the input kind
(:func:`~seqdance.features.md.frames.open_frames`: chunks made whole across periodic boundaries, and for
hydrogen-less or one-bead inputs given hydrogens or back-mapped), the fold of every frame into the accumulators,
the result. Per chunk it finds the nine interaction types natively
(:mod:`seqdance.features.md.interactions`) on the coordinates as written, superposes the frames on the first one
(Cα), then accumulates the Cα covariance (RMSF, correlation), the SASA (:mod:`seqdance.features.md.sasa`: MDTraj's
Shrake-Rupley numbers, frames in parallel, or on a GPU), MDTraj's DSSP and dihedrals, and the per-chain
conformational properties of the Cα trace (:mod:`seqdance.features.conformation`). Several trajectories
(replicas of one system) pool their frames. A one-bead (Cα) trace gives its own RMSF, correlation and
conformation; what an input cannot give is missing (NaN, listed), never zero (docs/design.md#missing-properties).
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
from seqdance.features.conformation import ConformationAccumulator, conformation_arrays
from seqdance.features.inputs.protein import ProteinTopology
from seqdance.features.inputs.spec import InputSpecLike
from seqdance.features.md.contact_geometry import ContactCriteria, build_contact_model
from seqdance.features.md.frames import MIN_AMIDE_H_COVERAGE, AllAtomFrames, TraceFrames, open_frames
from seqdance.features.md.interactions import ContactFrequencies, detect_contacts
from seqdance.features.md.properties import (
    DIHEDRAL_FUNCTIONS,
    CalphaFluctuations,
    CoordinateCovariance,
    DihedralHistogram,
    RunningMoments,
    dihedral_rows,
    dssp_counts,
)
from seqdance.features.md.residue_sasa import ResidueSasa
from seqdance.features.md.residue_sasa import resolve_engine as resolve_sasa_engine
from seqdance.features.options import (
    BACKMAP_REPRODUCED,
    CALPHA_PROPERTIES,
    TRACE_INPUT_KINDS,
    Frequency,
    MdOptions,
    MissingHydrogens,
    md_options,
)
from seqdance.features.results import MdFeatures
from seqdance.schema import INTERACTION_NAMES, PROPERTY_BY_NAME, properties_of_kind

log = logging.getLogger(__name__)

#: Output key of each MD property (:attr:`seqdance.schema.Property.raw_key`: ``rmsf_nor`` is returned raw as ``rmsf``).
MD_FEATURE_KEYS: dict[str, str] = {p.name: p.raw_key for p in properties_of_kind("md")}
_ANGLES: tuple[str, ...] = tuple(name for name in MD_FEATURE_KEYS if name in DIHEDRAL_FUNCTIONS)
_HBOND_TYPES: tuple[str, ...] = tuple(n for n in INTERACTION_NAMES if n.startswith("hb"))
#: Frames folded into the accumulators per step (at least; more with many SASA threads): the progress bar
#: advances this often. The result does not depend on it, as it does not on ``chunk_frames``.
PROGRESS_FRAMES = 10


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


def extract_md(topology: InputSpecLike, trajectory: InputSpecLike | Sequence[InputSpecLike] | None = None,
               options: MdOptions | None = None, *, progress: bool = False, **keywords: Any) -> MdFeatures:
    """Raw MD features of a protein trajectory (docs/design.md#md-features, #missing-properties); what it returns is
    :class:`MdFeatures`.

    ``topology``: any topology MDTraj reads (PDB, PSF, GRO, PRMTOP, ...), a GROMACS TPR (via MDAnalysis) or an
    mdCATH HDF5 file. ``trajectory``: one path or a list (replicas, frames pooled); ``None`` uses the frames of
    the topology file itself (multi-model PDB/mmCIF ensemble, mdCATH file). A path may carry a selector
    (``file.h5#348/0``, :class:`~seqdance.features.inputs.spec.InputSpec`).

    ``options`` (:class:`~seqdance.features.options.MdOptions`), or its fields as keywords (``frequency``,
    ``stride``, ``start``, ``stop``, ``missing_hydrogens``, ``add_hydrogens``, ``hydrogen_ph``,
    ``hydrogen_forcefield``, ``backmap``, ``backmap_properties``, ``criteria``, ``chunk_frames``, ``sasa``,
    ``device``, ``threads``): keywords change the given options. Frames ``start:stop:stride`` of every trajectory
    are used. ``frequency``: "reference" (atom-pair records per frame, as the released data) or "fraction"
    (fraction of frames with a contact, symmetric).

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

    SASA (:class:`seqdance.features.md.residue_sasa.ResidueSasa`): ``sasa="auto"`` computes MDTraj's Shrake-Rupley
    numbers with the compiled kernel on CPU (frames in parallel on ``threads`` cores, default all) or with torch
    when ``device`` is a GPU ("cuda", "cuda:1", "auto"); ``"numba"``/``"torch"`` force one; ``"mdtraj"`` calls
    MDTraj one frame at a time (the previous path, for comparison; same numbers, several times slower).
    Coordinates that are not finite, or absurdly far out, are an error naming the file, frame and atom.
    """
    options = md_options(options, **keywords)
    sasa_device = _sasa_device(options)  # a bad engine/device pair fails before any frame is read
    stream = open_frames(topology, trajectory, options)
    allatom, trace = _fold(stream, options, sasa_device, progress)
    n_frames = trace.n_frames if trace is not None else (allatom.n_frames if allatom is not None else 0)
    if n_frames < 2:
        raise InputError(
            f"{stream.loaded.path}: only {n_frames} frame selected; MD features need at least 2 frames "
            "(fluctuations and frequencies over a trajectory)"
        )
    protein = stream.protein
    log.info("%s: %d residues, %d frames from %d trajectories (%s)", stream.loaded.path, protein.n_residues,
             n_frames, len(stream.sources), stream.input_kind)
    missing = _missing_properties(stream.input_kind, options.backmap_properties, allatom)
    result: dict[str, Any] = allatom.result() if allatom is not None else {}
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
        frequency=str(options.frequency),
        input_kind=stream.input_kind,
        missing_properties=tuple(missing),
    )
    return cast(MdFeatures, result)


def _sasa_device(options: MdOptions) -> str | None:
    """The device SASA runs on (None: CPU), checked against the SASA engine."""
    sasa_device = None
    if options.device is not None:
        from seqdance.devices import resolve_device

        sasa_device = str(resolve_device(options.device))
    resolve_sasa_engine(options.sasa, sasa_device)
    return sasa_device


def _fold(stream: AllAtomFrames | TraceFrames, options: MdOptions, sasa_device: str | None, progress: bool
          ) -> tuple[_Accumulators | None, _TraceAccumulators | None]:
    """Every frame of ``stream`` folded into the all-atom accumulators and/or the trace's."""
    allatom: _Accumulators | None = None
    trace = _TraceAccumulators(stream.protein) if isinstance(stream, TraceFrames) else None
    # frames folded in per step: small for a moving bar, a few per thread so SASA keeps every core busy
    block = max(PROGRESS_FRAMES, 2 * (options.threads or os.cpu_count() or 1))
    with tqdm(total=stream.total, disable=not progress, unit="frame",
              desc=f"features md ({stream.input_kind})") as bar:
        for batch in stream:
            if trace is not None and batch.trace is not None:
                trace.add(batch.trace)
            if batch.frames is None:
                bar.update(len(batch))
                continue
            if allatom is None:
                atoms = stream.atoms
                assert atoms is not None
                sasa_engine = ResidueSasa(atoms.topology, atoms.residue_rows, engine=options.sasa,
                                          device=sasa_device, threads=options.threads)
                allatom = _Accumulators(atoms, batch.frames.xyz[0], options.frequency, options.criteria,
                                        options.missing_hydrogens, stream.loaded.path, sasa_engine)
            for lo in range(0, len(batch), block):  # small steps, so that the bar moves every few frames
                allatom.add(batch.frames[lo:lo + block], batch.frame_numbers[lo:lo + block], batch.source)
                bar.update(min(block, len(batch) - lo))
    return allatom, trace


def _missing_properties(input_kind: str, backmap_properties: str, acc: _Accumulators | None) -> list[str]:
    """Schema names (schema order) of the MD properties an input kind cannot give
    (docs/design.md#missing-properties)."""
    if input_kind in TRACE_INPUT_KINDS:
        keep = set(CALPHA_PROPERTIES)
    elif input_kind == "backmapped" and backmap_properties == "reproduced":
        keep = set(BACKMAP_REPRODUCED)
    else:
        keep = set(MD_FEATURE_KEYS)
    if acc is not None:
        keep -= acc.missing()
    return [name for name in MD_FEATURE_KEYS if name not in keep]
