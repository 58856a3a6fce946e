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
