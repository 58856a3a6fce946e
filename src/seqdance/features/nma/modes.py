"""Normal modes of elastic networks (docs/design.md#nma-features): GNM fluctuations and ANM correlations in three
frequency ranges.

Elastic networks on Cα atoms with distance-dependent springs (γ = 10 / 2 / 1 for d ≤ 4 / 10 / 15 Å, 0
beyond); the Kirchhoff matrix (GNM) gives per-residue fluctuations, the 3N Hessian (ANM) pair correlations.
Non-zero modes are split into three ranges by their cumulative share of Σ 1/λ.

Written here rather than called from ProDy (which the reference used): ProDy builds the matrices in Python
loops over residue pairs and forms 3N×3N covariances; the matrices here are built with array operations, the
eigenproblem is solved once per model by LAPACK's divide-and-conquer driver without copies, and the N×N
covariances come from one symmetric rank-k product per range. Results equal ProDy's to rounding.

Zero modes. The rigid-body modes of each connected piece of the network (1 translation in GNM; 3
translations + 3 rotations in ANM) are known exactly from the coordinates. By default (``zero_modes="rigid"``)
they are shifted to the eigenvalue σ = 2 × (Gershgorin bound of the matrix) by adding σ·QQᵀ (Q: orthonormal
rigid-body basis), so after the eigen-decomposition they are recognised by eigenvalue (≥ 0.75 σ, far above
every physical mode, which is ≤ σ/2) and removed, while every physical mode — however soft — is kept. A
physical eigenvalue ≤ ``SINGULAR_RTOL`` × σ (1e-14 σ; rounding leaves ≤ ~1e-15 σ) means the network has a
motion without restoring force beyond the rigid-body ones (a hinge, a collinear piece) and raises an error.
``zero_modes="reference"`` reproduces ProDy/the reference: eigenvalues below 1e-6 (absolute) are removed.
That threshold also removes genuine soft modes of floppy models (e.g. AlphaFold models with long disordered
tails, where physical ANM eigenvalues reach 1e-10), which changes the ranges; see docs/features_nma.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg import blas
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from seqdance.errors import InputError, SeqdanceError
from seqdance.features.options import DISCONNECTED, ZERO_MODES, Disconnected, ZeroModes
from seqdance.schema import properties_of_kind

#: (outer radius Å, spring constant) shells of the distance-dependent springs, innermost first.
SPRING_SHELLS: tuple[tuple[float, float], ...] = ((4.0, 10.0), (10.0, 2.0), (15.0, 1.0))
#: Distance beyond which residues are not connected (outermost shell).
CUTOFF = SPRING_SHELLS[-1][0]
#: ProDy's absolute zero-eigenvalue threshold, used by ``zero_modes="reference"``.
REFERENCE_ZERO_EIGENVALUE = 1e-6
#: A physical eigenvalue at or below this fraction of the rigid-mode shift σ counts as an extra zero mode.
SINGULAR_RTOL = 1e-14
#: Cα atoms closer than this (Å) are treated as duplicates (ANM spring direction undefined).
MIN_CA_DISTANCE = 0.5
#: Number of frequency ranges.
N_RANGES = 3
#: Fewest Cα atoms that give three non-empty GNM frequency ranges (N - 1 non-zero modes).
MIN_RESIDUES = 4

RESIDUE_KEYS: tuple[str, ...] = tuple(p.name for p in properties_of_kind("nma", "residue"))
PAIR_KEYS: tuple[str, ...] = tuple(p.name for p in properties_of_kind("nma", "pair"))


class NmaError(SeqdanceError, ValueError):
    """A structure cannot give normal-mode features; the message says why and what to do."""


# --- elastic network matrices --------------------------------------------------------------------


def spring_constants(sq_dist: np.ndarray) -> np.ndarray:
    """Spring constant for each squared Cα–Cα distance (Å²): 10, 2, 1 or 0 by shell (bounds inclusive)."""
    sq_dist = np.asarray(sq_dist, dtype=np.float64)
    conditions = [sq_dist <= radius * radius for radius, _ in SPRING_SHELLS]
    return np.select(conditions, [k for _, k in SPRING_SHELLS], 0.0)


def _check_coords(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise NmaError(f"Cα coordinates must have shape (N, 3), got {coords.shape}")
    if not np.isfinite(coords).all():
        raise NmaError("Cα coordinates contain NaN or infinite values")
    if coords.shape[0] < MIN_RESIDUES:
        raise NmaError(
            f"normal-mode features need at least {MIN_RESIDUES} Cα atoms (3 non-zero GNM modes, one per "
            f"frequency range), got {coords.shape[0]}"
        )
    return coords


def _axis_differences(coords: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-axis differences r_j - r_i (three N×N arrays) and squared distances."""
    diffs = [coords[None, :, a] - coords[:, None, a] for a in range(3)]
    sq_dist = diffs[0] * diffs[0] + diffs[1] * diffs[1] + diffs[2] * diffs[2]
    return diffs, sq_dist


def _pair_springs(sq_dist: np.ndarray) -> np.ndarray:
    springs = spring_constants(sq_dist)
    np.fill_diagonal(springs, 0.0)
    return springs


def kirchhoff_matrix(coords: np.ndarray) -> np.ndarray:
    """GNM Kirchhoff matrix (N×N): −γ_ij off the diagonal, Σ_j γ_ij on it."""
    coords = _check_coords(coords)
    _, sq_dist = _axis_differences(coords)
    kirchhoff = -_pair_springs(sq_dist)
    np.fill_diagonal(kirchhoff, -kirchhoff.sum(axis=1))
    return kirchhoff


def hessian_matrix(coords: np.ndarray) -> np.ndarray:
    """ANM Hessian (3N×3N): block (i, j) = −γ_ij r_ij r_ijᵀ / d_ij², diagonal block = −Σ_j of the row's blocks."""
    coords = _check_coords(coords)
    n = coords.shape[0]
    diffs, sq_dist = _axis_differences(coords)
    _raise_on_coincident(sq_dist)
    np.fill_diagonal(sq_dist, 1.0)
    scale = _pair_springs(sq_dist) / sq_dist
    hessian = np.empty((n, 3, n, 3))
    diagonal = np.arange(n)
    for a in range(3):
        for b in range(a, 3):
            block = -scale * diffs[a] * diffs[b]
            block[diagonal, diagonal] = -block.sum(axis=1)
            hessian[:, a, :, b] = block
            if b != a:
                hessian[:, b, :, a] = block
    return hessian.reshape(3 * n, 3 * n)


def _raise_on_coincident(sq_dist: np.ndarray, labels: Sequence[str] | None = None) -> None:
    close = np.argwhere(np.triu(sq_dist < MIN_CA_DISTANCE**2, k=1))
    if close.size:
        i, j = (int(v) for v in close[0])
        name = (lambda k: labels[k]) if labels is not None else (lambda k: f"#{k}")
        raise NmaError(
            f"{len(close)} pair(s) of Cα atoms closer than {MIN_CA_DISTANCE} Å (first: {name(i)} and "
            f"{name(j)}, {np.sqrt(sq_dist[i, j]):.3f} Å); remove duplicated residues"
        )


# --- network pieces and rigid-body modes ---------------------------------------------------------


def network_pieces(coords: np.ndarray) -> list[np.ndarray]:
    """Indices of each connected piece of the contact network (Cα pairs within the cutoff), in order."""
    coords = _check_coords(coords)
    _, sq_dist = _axis_differences(coords)
    adjacency = csr_matrix(sq_dist <= CUTOFF * CUTOFF)
    n_pieces, labels = connected_components(adjacency, directed=False)
    pieces = [np.flatnonzero(labels == k) for k in range(n_pieces)]
    return sorted(pieces, key=lambda idx: int(idx[0]))


def rigid_body_basis(coords: np.ndarray, pieces: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """Orthonormal basis of the rigid-body motions of every piece: (N, pieces) for dim 1, (3N, 6·pieces) for 3.

    dim 1 (GNM): one uniform vector per piece. dim 3 (ANM): three translations and three rotations about the
    piece's centroid; a collinear piece (no third rotation) raises :class:`NmaError`.
    """
    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    if dim == 1:
        basis = np.zeros((n, len(pieces)))
        for col, idx in enumerate(pieces):
            basis[idx, col] = 1.0 / np.sqrt(len(idx))
        return basis
    if dim != 3:
        raise InputError(f"dim must be 1 (GNM) or 3 (ANM), got {dim}")
    basis = np.zeros((n, 3, 6 * len(pieces)))
    for p, idx in enumerate(pieces):
        local = np.zeros((len(idx), 3, 6))
        centred = coords[idx] - coords[idx].mean(axis=0)
        for axis in range(3):
            local[:, axis, axis] = 1.0
            rotation = np.zeros(3)
            rotation[axis] = 1.0
            local[:, :, 3 + axis] = np.cross(rotation, centred)
        q, r = np.linalg.qr(local.reshape(3 * len(idx), 6))
        scale = np.abs(np.diag(r))
        if scale.min() <= 1e-6 * scale.max():
            raise NmaError(
                f"a network piece of {len(idx)} Cα atom(s) (first index {int(idx[0])}) is collinear or too "
                "small: its ANM motions are undefined"
            )
        basis[idx, :, 6 * p : 6 * p + 6] = q.reshape(len(idx), 3, 6)
    return basis.reshape(3 * n, 6 * len(pieces))


# --- eigen-decomposition --------------------------------------------------------------------------


@dataclass(frozen=True)
class Modes:
    """Non-zero normal modes: ascending eigenvalues (M,) and unit eigenvectors as rows (M, dof)."""

    eigvals: np.ndarray
    eigvecs_rows: np.ndarray  # C-contiguous (M, dof): row k is mode k
    n_zero: int


def _max_abs_column_sum(matrix: np.ndarray, block: int = 512) -> float:
    """Gershgorin bound of a symmetric matrix (≥ its largest |eigenvalue|), without an N×N temporary."""
    return max(float(np.abs(matrix[:, i : i + block]).sum(axis=0).max()) for i in range(0, matrix.shape[1], block))


def nonzero_modes(
    matrix: np.ndarray,
    rigid_basis: np.ndarray | None = None,
    *,
    zero_modes: ZeroModes = "rigid",
    overwrite: bool = False,
) -> Modes:
    """Eigenpairs of a symmetric network matrix with its zero modes removed (see the module docstring).

    ``rigid_basis`` (orthonormal columns) is required for ``zero_modes="rigid"``. ``overwrite`` lets the
    solver reuse ``matrix``'s memory (it is destroyed).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    dof = matrix.shape[0]
    # A symmetric C-ordered matrix is its own Fortran-ordered transpose: LAPACK then works without a copy.
    if matrix.flags.c_contiguous:
        work = matrix.T if overwrite else matrix.T.copy(order="F")
    else:
        work = np.array(matrix, order="F", copy=not overwrite)
    if zero_modes == "rigid":
        if rigid_basis is None:
            raise InputError("zero_modes='rigid' needs the rigid-body basis")
        shift = 2.0 * _max_abs_column_sum(work)
        n_rigid = rigid_basis.shape[1]
        # lower triangle of work += shift * Q Qᵀ, in place (eigh reads the lower triangle only)
        work = blas.dsyrk(shift, np.asfortranarray(rigid_basis), beta=1.0, c=work, trans=0, lower=1, overwrite_c=1)
        eigvals, eigvecs = scipy.linalg.eigh(
            work, lower=True, driver="evd", overwrite_a=True, check_finite=False
        )
        found = int(np.count_nonzero(eigvals >= 0.75 * shift))
        if found != n_rigid:
            raise NmaError(
                f"expected {n_rigid} rigid-body modes at the shifted eigenvalue, found {found}; the network "
                "matrix is not that of the given coordinates"
            )
        n_phys = dof - n_rigid
        if n_phys < 1:
            raise NmaError("the network has no internal (non-rigid) modes")
        eigvals = eigvals[:n_phys]
        if eigvals[0] <= SINGULAR_RTOL * shift:
            n_extra = int(np.count_nonzero(eigvals <= SINGULAR_RTOL * shift))
            raise NmaError(
                f"the elastic network has {n_extra} zero-frequency motion(s) beyond the rigid-body ones "
                "(a hinge or a nearly collinear stretch held by too few springs); its normal modes are undefined"
            )
        return Modes(eigvals, np.ascontiguousarray(eigvecs[:, :n_phys].T), n_rigid)
    if zero_modes == "reference":
        eigvals, eigvecs = scipy.linalg.eigh(work, lower=True, driver="evd", overwrite_a=True, check_finite=False)
        n_zero = int(np.count_nonzero(eigvals < REFERENCE_ZERO_EIGENVALUE))
        if n_zero >= dof:
            raise NmaError("every eigenvalue is below the reference zero threshold 1e-6")
        return Modes(eigvals[n_zero:], np.ascontiguousarray(eigvecs[:, n_zero:].T), n_zero)
    raise InputError(f"zero_modes must be 'rigid' or 'reference', got {zero_modes!r}")


# --- frequency ranges and features ----------------------------------------------------------------


def frequency_ranges(eigvals: np.ndarray) -> tuple[slice, slice, slice]:
    """Split ascending non-zero eigenvalues into low / mid / high ranges by cumulative 1/λ share C.

    Range 1 ends (inclusive) at the mode whose C is closest to 1/3, range 2 at the mode whose C is closest to
    (1 + C_end1)/2 (first such mode on ties), range 3 is the rest. An empty range raises :class:`NmaError`.
    """
    eigvals = np.asarray(eigvals, dtype=np.float64)
    inverse = 1.0 / eigvals
    cumulative = np.cumsum(inverse / inverse.sum())
    end1 = int(np.argmin(np.abs(cumulative - 1.0 / 3.0)))
    end2 = int(np.argmin(np.abs(cumulative - 0.5 * (1.0 + cumulative[end1]))))
    ranges = (slice(0, end1 + 1), slice(end1 + 1, end2 + 1), slice(end2 + 1, len(eigvals)))
    sizes = [r.stop - r.start for r in ranges]
    if min(sizes) < 1:
        raise NmaError(
            f"{len(eigvals)} non-zero modes cannot be split into three frequency ranges (sizes {sizes}); "
            "the structure is too small"
        )
    return ranges


def gnm_fluctuations(modes: Modes, ranges: Sequence[slice]) -> np.ndarray:
    """GNM mean-square fluctuation per range, (3, N): msf_i = Σ_{k∈range} u_ik² / λ_k."""
    weighted = modes.eigvecs_rows * modes.eigvecs_rows / modes.eigvals[:, None]
    return np.stack([weighted[r].sum(axis=0) for r in ranges])


def anm_correlations(modes: Modes, ranges: Sequence[slice], *, overwrite: bool = False) -> np.ndarray:
    """ANM correlation per range, (3, N, N): traces of the 3×3 blocks of Σ v vᵀ/λ, normalised by the diagonal.

    ``overwrite`` scales the eigenvectors of ``modes`` in place (saves one copy of the 3N×3N matrix).
    """
    rows = modes.eigvecs_rows if overwrite else modes.eigvecs_rows.copy()
    rows /= np.sqrt(modes.eigvals)[:, None]
    n = rows.shape[1] // 3
    out = np.empty((len(ranges), n, n))
    for k, r in enumerate(ranges):
        block = rows[r].reshape(-1, n, 3).transpose(1, 0, 2).reshape(n, -1)  # (N, 3·modes)
        covariance = block @ block.T  # Σ over modes and x, y, z: the 3×3 block traces
        diagonal = np.diag(covariance).copy()
        if diagonal.min() <= 0.0:
            raise NmaError(f"a residue has no fluctuation in ANM range {k + 1}; correlations are undefined")
        norm = np.sqrt(diagonal)
        covariance /= np.outer(norm, norm)
        np.clip(covariance, -1.0, 1.0, out=covariance)
        np.fill_diagonal(covariance, 1.0)
        out[k] = covariance
    return out


@dataclass(frozen=True)
class NmaResult:
    """GNM fluctuations (3, N) and ANM correlations (3, N, N) with the mode bookkeeping."""

    gnm_msf: np.ndarray
    anm_cor: np.ndarray
    gnm_range_sizes: tuple[int, int, int]
    anm_range_sizes: tuple[int, int, int]
    gnm_zero_modes: int
    anm_zero_modes: int
    n_pieces: int


def _describe_pieces(pieces: Sequence[np.ndarray], labels: Sequence[str] | None) -> str:
    def name(k: int) -> str:
        return labels[k] if labels is not None else f"#{k}"

    parts = [f"{len(idx)} residues from {name(int(idx[0]))}" for idx in pieces[:6]]
    more = f" and {len(pieces) - 6} more" if len(pieces) > 6 else ""
    return "; ".join(parts) + more


def nma_features(
    coords: np.ndarray,
    *,
    zero_modes: ZeroModes = "rigid",
    disconnected: Disconnected = "error",
    labels: Sequence[str] | None = None,
) -> NmaResult:
    """GNM fluctuations and ANM correlations in three frequency ranges from Cα coordinates (Å).

    ``disconnected``: what to do when the residues fall into pieces with no Cα pair within 15 Å between
    them: ``"error"`` raises :class:`NmaError`; ``"split"`` analyses each piece on its own (its own rigid-body
    modes and frequency ranges) and sets correlations between pieces to 0. (The reference pooled the modes of
    all pieces before splitting them into ranges, which leaves residues of one piece without motion in a
    range and their correlations 0/0.) ``labels`` name the residues in error messages.
    """
    coords = _check_coords(coords)
    if zero_modes not in ZERO_MODES:
        raise InputError(f"zero_modes must be one of {ZERO_MODES}, got {zero_modes!r}")
    if disconnected not in DISCONNECTED:
        raise InputError(f"disconnected must be one of {DISCONNECTED}, got {disconnected!r}")
    _, sq_dist = _axis_differences(coords)
    _raise_on_coincident(sq_dist, labels)
    del sq_dist
    pieces = network_pieces(coords)
    if len(pieces) == 1:
        return _connected_features(coords, zero_modes)
    if disconnected == "error":
        raise NmaError(
            f"the structure falls into {len(pieces)} pieces with no Cα pair within {CUTOFF:g} Å between them "
            f"({_describe_pieces(pieces, labels)}); select chains that touch, or pass disconnected='split' "
            "(CLI: --disconnected split) to analyse each piece on its own"
        )
    small = [idx for idx in pieces if len(idx) < MIN_RESIDUES]
    if small:
        raise NmaError(
            f"{len(small)} separate piece(s) of the network have fewer than {MIN_RESIDUES} Cα atoms "
            f"({_describe_pieces(small, labels)}); remove them (e.g. select chains)"
        )
    n = coords.shape[0]
    gnm_msf = np.zeros((N_RANGES, n))
    anm_cor = np.zeros((N_RANGES, n, n))
    gnm_sizes = np.zeros(N_RANGES, dtype=int)
    anm_sizes = np.zeros(N_RANGES, dtype=int)
    gnm_zero = anm_zero = 0
    for idx in pieces:
        part = _connected_features(coords[idx], zero_modes)
        gnm_msf[:, idx] = part.gnm_msf
        anm_cor[:, idx[:, None], idx[None, :]] = part.anm_cor
        gnm_sizes += part.gnm_range_sizes
        anm_sizes += part.anm_range_sizes
        gnm_zero += part.gnm_zero_modes
        anm_zero += part.anm_zero_modes
    return NmaResult(gnm_msf, anm_cor, tuple(int(v) for v in gnm_sizes), tuple(int(v) for v in anm_sizes),
                     gnm_zero, anm_zero, len(pieces))  # type: ignore[arg-type]


def _connected_features(coords: np.ndarray, zero_modes: ZeroModes) -> NmaResult:
    """:func:`nma_features` of one connected network."""
    pieces = [np.arange(coords.shape[0])]
    gnm_basis = rigid_body_basis(coords, pieces, 1) if zero_modes == "rigid" else None
    gnm_modes = nonzero_modes(kirchhoff_matrix(coords), gnm_basis, zero_modes=zero_modes, overwrite=True)
    gnm_ranges = frequency_ranges(gnm_modes.eigvals)
    gnm_msf = gnm_fluctuations(gnm_modes, gnm_ranges)
    gnm_zero = gnm_modes.n_zero
    del gnm_modes

    anm_basis = rigid_body_basis(coords, pieces, 3) if zero_modes == "rigid" else None
    anm_modes = nonzero_modes(hessian_matrix(coords), anm_basis, zero_modes=zero_modes, overwrite=True)
    anm_ranges = frequency_ranges(anm_modes.eigvals)
    anm_cor = anm_correlations(anm_modes, anm_ranges, overwrite=True)

    if not (np.isfinite(gnm_msf).all() and np.isfinite(anm_cor).all()):  # guard: never hand out NaN
        raise NmaError("normal-mode features are not finite (numerically singular network)")
    return NmaResult(
        gnm_msf=gnm_msf,
        anm_cor=anm_cor,
        gnm_range_sizes=tuple(r.stop - r.start for r in gnm_ranges),  # type: ignore[arg-type]
        anm_range_sizes=tuple(r.stop - r.start for r in anm_ranges),  # type: ignore[arg-type]
        gnm_zero_modes=gnm_zero,
        anm_zero_modes=anm_modes.n_zero,
        n_pieces=1,
    )
