"""The choices of the feature options, defined once (light: the CLI reads them without importing MDTraj or SciPy)."""

from __future__ import annotations

from typing import Literal

#: Interaction frequency definitions (DESIGN §3.8): atom-pair records per frame, as the released data, or the
#: fraction of frames with at least one contact (symmetric).
Frequency = Literal["reference", "fraction"]
FREQUENCIES: tuple[str, ...] = ("reference", "fraction")

#: What to do with a trajectory without hydrogens: fail, or skip the H-bond maps (masked).
MissingHydrogens = Literal["error", "skip"]
MISSING_HYDROGENS: tuple[str, ...] = ("error", "skip")

#: Which implementation computes SASA: "auto" = the compiled kernel on CPU, torch on a GPU device; "mdtraj" =
#: MDTraj's ``shrake_rupley`` called one frame at a time (the previous path, kept for comparison).
SasaEngine = Literal["auto", "numba", "torch", "mdtraj"]
SASA_ENGINES: tuple[str, ...] = ("auto", "numba", "torch", "mdtraj")

#: Normal-mode zero modes: remove exactly the rigid-body modes, or every eigenvalue < 1e-6 as the reference.
ZeroModes = Literal["rigid", "reference"]
ZERO_MODES: tuple[str, ...] = ("rigid", "reference")

#: A structure whose residues fall into separate pieces: fail, or analyse each piece on its own.
Disconnected = Literal["error", "split"]
DISCONNECTED: tuple[str, ...] = ("error", "split")

#: Per-chain conformational properties of DESIGN §10.3 (seqdance.features.conformation), in table order.
CONFORMATION_PROPERTIES: tuple[str, ...] = (
    "rg_mean", "rg_std", "ree_mean", "ree_std", "asphericity_mean", "asphericity_std", "scaled_rg", "nu", "r0",
)

#: Back-mapping engines for one-bead-per-residue traces (seqdance.features.backmapping): PULCHRA's C++ code
#: ("pulchra", PyPI pypulchra) or its pure-Python port ("pulchra-python", PyPI pulchra).
BackmapEngine = Literal["pulchra", "pulchra-python"]
BACKMAP_ENGINES: tuple[str, ...] = ("pulchra", "pulchra-python")

#: Which properties of back-mapped frames are kept: those back-mapping reproduces (docs/coarse_grained.md,
#: fidelity decision; the others are missing) or every property, as the reference computed them.
BackmapProperties = Literal["reproduced", "all"]
BACKMAP_PROPERTY_SETS: tuple[str, ...] = ("reproduced", "all")
#: Schema names of the MD properties back-mapped frames reproduce usefully (RMSF and the movement correlation come
#: from the trace itself); measured by benchmarks/bench_backmapping.py, decision in docs/coarse_grained.md.
BACKMAP_REPRODUCED: tuple[str, ...] = ("sasa_mean", "sasa_std", "rmsf_nor", "ss", "vdw", "hbbb", "corr")
#: Schema names of the MD properties a Cα trace defines by itself (DESIGN §3b).
CALPHA_PROPERTIES: tuple[str, ...] = ("rmsf_nor", "corr")

#: Force fields for adding hydrogens (seqdance.features.hydrogens): Amber ff14SB, or "none" for Modeller's
#: force-field-free geometric placement (accepts any residue; loses many side-chain H-bonds).
HydrogenForceFieldName = Literal["amber14", "none"]
HYDROGEN_FORCEFIELDS: tuple[str, ...] = ("amber14", "none")
#: pH at which protonation states are chosen when hydrogens are added.
DEFAULT_HYDROGEN_PH = 7.0

#: What kind of input an MD feature set came from (MdFeatures["input_kind"]): an all-atom trajectory as given,
#: an all-atom trajectory given hydrogens here, a one-bead-per-residue (Cα) trace, such a trace back-mapped, or
#: the backbone (BB) beads of a Martini model (several beads per residue).
InputKind = Literal["all_atom", "all_atom_protonated", "calpha", "backmapped", "martini"]
INPUT_KINDS: tuple[str, ...] = ("all_atom", "all_atom_protonated", "calpha", "backmapped", "martini")
#: Input kinds read as a trace of one bead per residue (Cα properties only unless back-mapped).
TRACE_INPUT_KINDS: tuple[str, ...] = ("calpha", "martini")
