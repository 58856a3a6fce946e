"""Per-residue MD properties accumulated chunk by chunk: SASA, DSSP, dihedral histograms, Cα RMSF/correlation.

MDTraj computes the per-frame DSSP and phi/psi/chi1 (SASA: :mod:`seqdance.features.md.sasa`, or MDTraj's Shrake-Rupley
one frame per call with :func:`sasa_per_residue`); this module only folds them
into running statistics so that trajectories of any length are processed in bounded memory. Means, variances
and the Cα co-moment matrix are merged across chunks with Chan et al.'s pairwise update, which is exact and
numerically stable (no sum-of-squares cancellation). Definitions: docs/design.md#md-features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.schema import ANGLE_BINS, ANGLE_RANGE_DEG, SS_DSSP_CODES

#: Bin edges of the dihedral histograms (radians), as np.histogram(range=(-π, π), bins=12) uses them.
ANGLE_EDGES = np.deg2rad(np.linspace(ANGLE_RANGE_DEG[0], ANGLE_RANGE_DEG[1], ANGLE_BINS + 1))

#: MDTraj function computing each dihedral property of the schema (chi = chi1).
DIHEDRAL_FUNCTIONS = {"phi": md.compute_phi, "psi": md.compute_psi, "chi": md.compute_chi1}

#: Largest peptide C-N distance (nm) across which phi/psi are defined; longer means a chain break.
PEPTIDE_BOND_MAX_NM = 0.2


@dataclass
class RunningMoments:
    """Mean and second central moment of a vector quantity over frames (Chan's chunk merge)."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """``values`` (F, ...) for F new frames."""
        values = np.asarray(values, dtype=np.float64)
        nb = values.shape[0]
        if nb == 0:
            return
        mean_b = values.mean(axis=0)
        m2_b = ((values - mean_b) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mean_b, m2_b
            return
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * nb / n)
        self.n = n

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0), as np.std."""
        return np.sqrt(self.m2 / self.n)


@dataclass
class CoordinateCovariance:
    """Running covariance of N atom positions, reduced to N×N by summing the x, y, z blocks."""

    n: int = 0
    mean: np.ndarray | None = None  # (N, 3)
    comoment: np.ndarray | None = None  # (N, N): Σ_frames (x_i - mean_i)·(x_j - mean_j)

    def add(self, xyz: np.ndarray) -> None:
        """``xyz`` (F, N, 3) positions of the new frames."""
        xyz = np.asarray(xyz, dtype=np.float64)
        nb, n_atoms, _ = xyz.shape
        if nb == 0:
            return
        mean_b = xyz.mean(axis=0)
        centred = (xyz - mean_b).transpose(1, 0, 2).reshape(n_atoms, nb * 3)
        com_b = centred @ centred.T
        if self.n == 0:
            self.n, self.mean, self.comoment = nb, mean_b, com_b
            return
        n = self.n + nb
        delta = mean_b - self.mean
        self.comoment = self.comoment + com_b + (delta @ delta.T) * (self.n * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def rmsf(self) -> np.ndarray:
        """Root-mean-square fluctuation of each atom around its mean position."""
        return np.sqrt(np.diag(self.comoment) / self.n)

    def correlation(self) -> np.ndarray:
        """Movement correlation C_ij / sqrt(C_ii C_jj); NaN where an atom does not move."""
        msf = np.diag(self.comoment)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = self.comoment / np.sqrt(np.outer(msf, msf))
        return corr


@dataclass
class DihedralHistogram:
    """12-bin histogram over frames of one dihedral per residue (rows without the angle stay NaN)."""

    n_residues: int
    counts: np.ndarray = field(init=False)
    defined: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros((self.n_residues, ANGLE_BINS), dtype=np.int64)
        self.defined = np.zeros(self.n_residues, dtype=bool)

    def add(self, rows: np.ndarray, angles: np.ndarray) -> None:
        """``rows`` (n,) residue row per angle, ``angles`` (F, n) radians in [-π, π]."""
        if rows.size == 0:
            return
        bins = np.clip(np.searchsorted(ANGLE_EDGES, angles, side="right") - 1, 0, ANGLE_BINS - 1)
        flat = (rows[None, :] * ANGLE_BINS + bins).ravel()
        self.counts += np.bincount(flat, minlength=self.n_residues * ANGLE_BINS).reshape(self.counts.shape)
        self.defined[rows] = True

    def result(self, n_frames: int) -> np.ndarray:
        out = self.counts / n_frames
        out[~self.defined] = np.nan
        return out


def dihedral_rows(kind: str, traj: md.Trajectory, atom_residue: np.ndarray,
                  first_frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Atom quadruplets of ``kind`` (phi/psi/chi1) that belong to output residues, and their residue rows.

    A phi or psi spanning a chain break (peptide C-N longer than 0.2 nm in ``first_frame``) is left out: it
    would join residues that are not bonded.
    """
    indices, _ = DIHEDRAL_FUNCTIONS[kind](traj[:1])
    if len(indices) == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = atom_residue[indices[:, 1]]
    keep = rows >= 0
    if first_frame is not None and kind in ("phi", "psi"):
        c, n = (indices[:, 0], indices[:, 1]) if kind == "phi" else (indices[:, 2], indices[:, 3])
        keep &= np.linalg.norm(first_frame[c] - first_frame[n], axis=1) <= PEPTIDE_BOND_MAX_NM
    return indices[keep], rows[keep]


def dssp_counts(traj: md.Trajectory, residue_rows: np.ndarray) -> np.ndarray:
    """(N, 8) number of frames of ``traj`` in each DSSP 8-class state (schema order) per output residue."""
    codes = md.compute_dssp(traj, simplified=False)[:, residue_rows]
    return np.stack([(codes == c).sum(axis=0) for c in SS_DSSP_CODES], axis=1)


def sasa_per_residue(traj: md.Trajectory, residue_rows: np.ndarray) -> np.ndarray:
    """(F, N) Shrake-Rupley SASA (nm², MDTraj defaults) of the output residues, one frame per MDTraj call.

    The previous default of ``extract_md``, kept as ``sasa="mdtraj"`` for comparison: the compiled kernel of
    :mod:`seqdance.features.md.sasa` gives the same numbers several times faster.

    MDTraj 1.11 keeps per-thread work buffers between the frames of one ``shrake_rupley`` call, so every frame
    after a thread's first is off by up to ~0.003 nm² (this, not a version change, is the 0.0018 nm² gap to the
    reference's MDTraj 1.9.9 noted in docs/design.md#md-features). Calling it per frame reproduces the
    reference to 1e-7.
    """
    out = np.empty((traj.n_frames, len(residue_rows)), dtype=np.float64)
    for k in range(traj.n_frames):
        frame = md.Trajectory(traj.xyz[k:k + 1], traj.topology)  # traj[k] would deep-copy the topology
        out[k] = md.shrake_rupley(frame, mode="residue")[0, residue_rows]
    return out


class CalphaFluctuations:
    """Cα RMSF and movement correlation folded chunk by chunk
    (docs/design.md#superposition, #rmsf, #movement-correlation).

    Frames are superposed on the first frame added (by all given positions, with MDTraj's ``superpose``, as
    extract_md superposes by Cα) and their covariance accumulated with :class:`CoordinateCovariance`.
    """

    def __init__(self) -> None:
        self.reference: md.Trajectory | None = None
        self.covariance = CoordinateCovariance()

    def add(self, xyz: np.ndarray) -> None:
        """``xyz`` (F, N, 3) Cα positions (nm) of the next frames, made whole."""
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim != 3 or xyz.shape[-1] != 3:
            raise InputError(f"Cα positions must have shape (frames, residues, 3), got {xyz.shape}")
        traj = md.Trajectory(xyz.copy(), None)
        if self.reference is None:
            self.reference = md.Trajectory(xyz[:1].copy(), None)
        traj.superpose(self.reference, 0)
        self.covariance.add(traj.xyz)

    @property
    def n_frames(self) -> int:
        return self.covariance.n

    def result(self) -> dict[str, np.ndarray]:
        """``rmsf`` (N,) nm and ``corr`` (N, N); needs at least 2 frames."""
        if self.covariance.n < 2:
            raise InputError(f"Cα fluctuations need at least 2 frames, got {self.covariance.n}")
        return {"rmsf": self.covariance.rmsf(), "corr": self.covariance.correlation()}
