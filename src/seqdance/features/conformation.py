"""Global conformational properties of a chain ensemble from its Cα trace (docs/design.md#conformational-properties).

Per chain and frame, over Cα positions r_1..r_N (nm):

* radius of gyration Rg = sqrt(mean_i |r_i − r̄|²), unweighted (every residue counts once);
* end-to-end distance Re = |r_N − r_1|;
* gyration tensor S = mean_i (r_i − r̄)(r_i − r̄)ᵀ with eigenvalues λ1..3 and asphericity
  Δ = 1 − 3(λ1λ2 + λ2λ3 + λ3λ1)/(λ1 + λ2 + λ3)² (0 for a sphere, 1 for a rod);

ensemble values are their means and (population) standard deviations over frames; the scaled radius of
gyration is ⟨Rg⟩ / N^0.366 (the ordered-protein normalisation of docs/design.md#conformational-properties). The Flory
scaling exponent ν comes from a fit of the root-mean-square intrachain distance at sequence separation s,
R(s) = sqrt(mean over frames and over pairs (i, i+s) of |r_{i+s} − r_i|²), to R(s) = R0 s^ν over s > 5.

**IDRome's convention** (Tesei et al. 2024, ``calcRs`` and the ``curve_fit`` of their analysis script): R(s)
as above (one root-mean-square over frames *and* pairs), separations s > 5, an unweighted non-linear
least-squares fit of R(s) (not of its logarithm) from the start (R0, ν) = (0.4 nm, 0.5), **R0 free** — this is
the default here. ``r0=...`` fixes R0 instead and fits ν alone. (IDRome also weights Rg and the gyration tensor
by residue mass and reports Δ as a ratio of ensemble averages; docs/design.md#conformational-properties asks for the
unweighted, per-frame definitions above.)

Everything is vectorised over frames (no loop over frames, residues or pairs); :class:`ConformationAccumulator`
folds frames in chunk by chunk so trajectories of any length fit in memory. Hand-written because no library
offers the Flory fit, and MDTraj's gyration helpers work on whole trajectories only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seqdance.errors import InputError
from seqdance.features.options import CONFORMATION_PROPERTIES

#: Exponent of the ordered-protein Rg normalisation, Rg / N^0.366 (docs/design.md#conformational-properties).
RG_SCALING_EXPONENT = 0.366
#: The Flory fit uses separations s > this (IDRome's convention).
FLORY_MIN_SEPARATION = 5
#: Starting point (R0 nm, ν) of IDRome's non-linear Flory fit (the fit here needs none: see fit_flory_exponent).
FLORY_START = (0.4, 0.5)

#: Names of the per-chain ensemble properties, in table order (CSV columns, store metadata keys).
PROPERTY_NAMES: tuple[str, ...] = CONFORMATION_PROPERTIES
#: Unit of each property.
PROPERTY_UNITS: dict[str, str] = {
    "rg_mean": "nm", "rg_std": "nm", "ree_mean": "nm", "ree_std": "nm", "asphericity_mean": "",
    "asphericity_std": "", "scaled_rg": "nm", "nu": "", "r0": "nm",
}


def _as_frames(xyz: np.ndarray, what: str = "coordinates") -> np.ndarray:
    """(F, N, 3) float64 from (F, N, 3) or a single frame (N, 3); rejects other shapes and non-finite values."""
    arr = np.asarray(xyz, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(f"{what}: expected (frames, residues, 3) or (residues, 3) coordinates, got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what}: no frames or no residues (shape {arr.shape})")
    if not np.isfinite(arr).all():
        frame = int(np.flatnonzero(~np.isfinite(arr).all(axis=(1, 2)))[0])
        raise InputError(f"{what}: frame {frame} has non-finite coordinates")
    return arr


def centred(xyz: np.ndarray) -> np.ndarray:
    """Coordinates minus each frame's (unweighted) centre, (F, N, 3)."""
    arr = _as_frames(xyz)
    return arr - arr.mean(axis=1, keepdims=True)


def radius_of_gyration(xyz: np.ndarray) -> np.ndarray:
    """(F,) unweighted radius of gyration of each frame (nm if ``xyz`` is in nm)."""
    c = centred(xyz)
    return np.sqrt(np.einsum("fnk,fnk->f", c, c) / c.shape[1])


def end_to_end_distance(xyz: np.ndarray) -> np.ndarray:
    """(F,) distance between the first and the last position of each frame."""
    arr = _as_frames(xyz)
    return np.linalg.norm(arr[:, -1] - arr[:, 0], axis=-1)


def gyration_tensors(xyz: np.ndarray) -> np.ndarray:
    """(F, 3, 3) gyration tensor S = mean_i (r_i − r̄)(r_i − r̄)ᵀ of each frame."""
    c = centred(xyz)
    return np.einsum("fni,fnj->fij", c, c) / c.shape[1]


def asphericity(tensors: np.ndarray) -> np.ndarray:
    """(F,) Δ = 1 − 3(λ1λ2 + λ2λ3 + λ3λ1)/(λ1 + λ2 + λ3)² from gyration tensors (F, 3, 3); NaN for a point."""
    s = np.asarray(tensors, dtype=np.float64)
    lam = np.clip(np.linalg.eigvalsh(s), 0.0, None)  # S is positive semi-definite; clip round-off below 0
    total = lam.sum(axis=-1)
    pairs = lam[..., 0] * lam[..., 1] + lam[..., 1] * lam[..., 2] + lam[..., 2] * lam[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - 3.0 * pairs / total**2


def separation_sums(gram_sum: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean square distance at each separation s = 0..N−1 from Σ_frames of the centred Gram matrix X Xᵀ.

    |r_i − r_j|² = |r_i|² + |r_j|² − 2 r_i·r_j per frame, so the frame mean of the N×N squared-distance matrix
    follows from the summed Gram matrix; each diagonal s is then averaged over its N − s pairs.
    """
    g = np.asarray(gram_sum, dtype=np.float64) / n_frames
    norms = np.diag(g)
    d2 = np.clip(norms[:, None] + norms[None, :] - 2.0 * g, 0.0, None)
    n = d2.shape[0]
    i, j = np.triu_indices(n)
    sums = np.bincount(j - i, weights=d2[i, j], minlength=n)
    return sums / (n - np.arange(n))


def rms_distance_by_separation(xyz: np.ndarray) -> np.ndarray:
    """(N,) R(s) = sqrt(mean over frames and pairs (i, i+s) of |r_{i+s} − r_i|²) for s = 0..N−1 (R(0) = 0)."""
    c = centred(xyz)
    gram = np.einsum("fik,fjk->ij", c, c)
    return np.sqrt(separation_sums(gram, c.shape[0]))


@dataclass(frozen=True)
class FloryFit:
    """Result of fitting R(s) = R0 s^ν: ν, R0 (nm; the fixed value when it was not fitted), standard errors, and
    the fit's quality: R² of R(s) and the fitted separations s_min..s_max (``n_points`` of them)."""

    nu: float
    r0: float
    nu_stderr: float
    r0_stderr: float  # NaN when R0 was fixed
    n_points: int
    r0_fixed: bool
    r_squared: float = float("nan")
    s_min: int = 0  # 0 when there was nothing to fit
    s_max: int = 0


def _bracket_root(fun: Any, start: float, step: float = 0.05, limit: float = 20.0) -> tuple[float, float] | None:
    """(lo, hi) around ``start`` with fun(lo) > 0 > fun(hi) (a maximum of the objective whose derivative has the
    sign of ``fun``), searched outwards in doubling steps; None when there is none within ``limit``."""
    lo = hi = start
    f_lo = f_hi = fun(start)
    if f_lo == 0:
        return start, start
    while step <= limit:
        if f_lo <= 0:
            lo -= step
            f_lo = fun(lo)
        if f_hi >= 0:
            hi += step
            f_hi = fun(hi)
        if f_lo > 0 > f_hi:
            return lo, hi
        step *= 2
    return None


def fit_flory_exponent(
    rms_by_separation: np.ndarray,
    *,
    r0: float | None = None,
    min_separation: int = FLORY_MIN_SEPARATION,
) -> FloryFit:
    """Fit R(s) = R0 s^ν to ``rms_by_separation`` (index s = 0..N−1) over s > ``min_separation``.

    ``r0=None`` (IDRome's convention) fits R0 and ν together; a number fixes R0 (nm) and fits ν alone. The fit is
    the unweighted least squares on R(s) (not on log R) that IDRome's ``curve_fit`` solves, solved here to
    round-off: for a given ν the best R0 is Σ R s^ν / Σ s^2ν in closed form, so ν is the root of a one-dimensional
    stationarity condition, bracketed around the log-log linear fit and found by Brent's method to ~1e-15.
    (An iterative two-parameter fit stops wherever its tolerance lets it, ~1e-8 away for flat R(s) such as a
    folded chain's, so ν would depend on summation order.) Too few separations for the fit (fewer than two, or
    one with R0 fixed) give NaN: ν is undefined for chains of ≤ min_separation + 2 residues.
    """
    from scipy.optimize import brentq

    values = np.asarray(rms_by_separation, dtype=np.float64)
    s = np.arange(values.shape[0], dtype=np.float64)
    keep = s > min_separation
    x, y = s[keep], values[keep]
    needed = 1 if r0 is not None else 2
    nan = float("nan")
    if x.size < needed:
        return FloryFit(nan, nan if r0 is None else float(r0), nan, nan, int(x.size), r0 is not None)
    if not np.isfinite(y).all() or (y <= 0).any():
        raise InputError("Flory fit: the root-mean-square distances must be finite and positive")
    if r0 is not None and not r0 > 0:
        raise InputError(f"Flory fit: fixed R0 must be positive, got {r0}")
    log_x, log_y = np.log(x), np.log(y)

    def sums(nu: float) -> tuple[float, float, float, float]:
        p = np.exp(nu * log_x)  # s^ν
        return float(y @ p), float((y * log_x) @ p), float(p @ p), float((p * log_x) @ p)

    if r0 is None:
        def slope(nu: float) -> float:  # has the sign of d/dν (Σ y s^ν)² / Σ s^2ν, the variance R0(ν) explains
            a, a_log, b, b_log = sums(nu)
            return a_log * b - a * b_log
        nu_start = float(np.polyfit(log_x, log_y, 1)[0]) if x.size >= 2 else FLORY_START[1]
    else:
        fixed = float(r0)

        def slope(nu: float) -> float:  # −½ d/dν Σ (y − R0 s^ν)² / R0
            _, a_log, _, b_log = sums(nu)
            return a_log - fixed * b_log
        nu_start = float(np.mean((log_y - math.log(fixed))[x > 1] / log_x[x > 1])) if (x > 1).any() else 0.5
    bracket = _bracket_root(slope, nu_start)
    if bracket is None:
        raise InputError(f"Flory fit: no least-squares optimum of R(s) = R0 s^nu near nu = {nu_start:.3g}")
    nu = bracket[0] if bracket[0] == bracket[1] else brentq(slope, *bracket, xtol=1e-15, rtol=1e-15, maxiter=200)
    a, _, b, _ = sums(nu)
    amplitude = a / b if r0 is None else float(r0)
    model = amplitude * np.exp(nu * log_x)
    residual = y - model
    ssr = float(residual @ residual)
    sst = float(((y - y.mean()) ** 2).sum())
    r_squared = 1.0 - ssr / sst if sst > 0 else (1.0 if ssr == 0 else nan)
    # standard errors as curve_fit reports them: s² (JᵀJ)⁻¹, s² = SSR / (points − parameters)
    jac = (model * log_x)[:, None] if r0 is not None else np.stack([model / amplitude, model * log_x], axis=1)
    dof = x.size - jac.shape[1]
    errs = np.full(jac.shape[1], nan)
    if dof > 0:
        with np.errstate(all="ignore"):
            cov = np.linalg.pinv(jac.T @ jac) * (ssr / dof)
        errs = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    common = {"n_points": int(x.size), "r_squared": r_squared, "s_min": int(x[0]), "s_max": int(x[-1])}
    if r0 is not None:
        return FloryFit(float(nu), float(r0), float(errs[0]), nan, r0_fixed=True, **common)
    return FloryFit(float(nu), float(amplitude), float(errs[1]), float(errs[0]), r0_fixed=False, **common)


@dataclass(frozen=True)
class ChainConformation:
    """Ensemble conformational properties of one chain (see the module docstring; lengths in nm)."""

    n_residues: int
    n_frames: int
    rg_mean: float
    rg_std: float
    ree_mean: float
    ree_std: float
    asphericity_mean: float
    asphericity_std: float
    scaled_rg: float
    nu: float
    r0: float
    r0_fixed: bool = False
    #: quality of the Flory fit: R² of R(s) and the fitted separations (0, 0: no fit; absent from older records)
    nu_r2: float = float("nan")
    nu_s_min: int = 0
    nu_s_max: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainConformation:
        """Inverse of :meth:`as_dict` (None -> NaN)."""
        values = {k: (float("nan") if data.get(k) is None else data[k]) for k in cls.__dataclass_fields__}
        values["n_residues"], values["n_frames"] = int(values["n_residues"]), int(values["n_frames"])
        values["r0_fixed"] = bool(data.get("r0_fixed", False))
        values["nu_s_min"], values["nu_s_max"] = int(data.get("nu_s_min") or 0), int(data.get("nu_s_max") or 0)
        return cls(**values)


@dataclass
class _ChainAccumulator:
    n_residues: int
    rg: list[np.ndarray] = field(default_factory=list)
    ree: list[np.ndarray] = field(default_factory=list)
    delta: list[np.ndarray] = field(default_factory=list)
    gram: np.ndarray | None = None
    n_frames: int = 0

    def add(self, xyz: np.ndarray) -> None:
        c = xyz - xyz.mean(axis=1, keepdims=True)
        n = c.shape[1]
        self.rg.append(np.sqrt(np.einsum("fnk,fnk->f", c, c) / n))
        self.ree.append(np.linalg.norm(xyz[:, -1] - xyz[:, 0], axis=-1))
        self.delta.append(asphericity(np.einsum("fni,fnj->fij", c, c) / n))
        # Σ_f X_f X_fᵀ as one (N, 3F) @ (3F, N) product
        flat = c.transpose(1, 0, 2).reshape(n, -1)
        gram = flat @ flat.T
        self.gram = gram if self.gram is None else self.gram + gram
        self.n_frames += xyz.shape[0]

    def result(self, r0: float | None, rg_exponent: float) -> ChainConformation:
        rg, ree, delta = (np.concatenate(v) for v in (self.rg, self.ree, self.delta))
        assert self.gram is not None
        fit = fit_flory_exponent(np.sqrt(separation_sums(self.gram, self.n_frames)), r0=r0)
        rg_mean = float(rg.mean())
        return ChainConformation(
            n_residues=self.n_residues, n_frames=self.n_frames,
            rg_mean=rg_mean, rg_std=float(rg.std()), ree_mean=float(ree.mean()), ree_std=float(ree.std()),
            asphericity_mean=float(delta.mean()), asphericity_std=float(delta.std()),
            scaled_rg=rg_mean / self.n_residues**rg_exponent, nu=fit.nu, r0=fit.r0, r0_fixed=fit.r0_fixed,
            nu_r2=fit.r_squared, nu_s_min=fit.s_min, nu_s_max=fit.s_max,
        )


class ConformationAccumulator:
    """Folds frames of a (multi-chain) Cα trace in chunk by chunk; :meth:`result` gives one entry per chain.

    ``chain_lengths``: residues per chain, in the order of the coordinate rows (None: one chain). Frames may be
    superposed or not: every property is invariant under rigid motion of a frame.
    """

    def __init__(
        self,
        chain_lengths: Sequence[int] | None = None,
        *,
        r0: float | None = None,
        rg_exponent: float = RG_SCALING_EXPONENT,
    ) -> None:
        self.chain_lengths = None if chain_lengths is None else [int(n) for n in chain_lengths]
        if self.chain_lengths is not None and (not self.chain_lengths or min(self.chain_lengths) < 1):
            raise InputError(f"chain lengths must be positive, got {self.chain_lengths}")
        self.r0 = r0
        self.rg_exponent = float(rg_exponent)
        self._chains: list[_ChainAccumulator] | None = None

    def add(self, xyz: np.ndarray) -> None:
        """``xyz`` (F, N, 3) or (N, 3): Cα positions of new frames."""
        arr = _as_frames(xyz, "Cα coordinates")
        lengths = self.chain_lengths or [arr.shape[1]]
        if sum(lengths) != arr.shape[1]:
            raise InputError(f"Cα coordinates have {arr.shape[1]} residues; the chain lengths {lengths} add up to "
                             f"{sum(lengths)}")
        if self._chains is None:
            self._chains = [_ChainAccumulator(n) for n in lengths]
        bounds = np.cumsum([0, *lengths])
        for chain, start, stop in zip(self._chains, bounds[:-1], bounds[1:]):
            chain.add(arr[:, start:stop])

    @property
    def n_frames(self) -> int:
        return 0 if not self._chains else self._chains[0].n_frames

    def result(self) -> list[ChainConformation]:
        if not self._chains:
            raise InputError("no frames were added")
        return [chain.result(self.r0, self.rg_exponent) for chain in self._chains]


def conformational_properties(
    xyz: np.ndarray,
    chain_lengths: Sequence[int] | None = None,
    *,
    r0: float | None = None,
    rg_exponent: float = RG_SCALING_EXPONENT,
) -> list[ChainConformation]:
    """Ensemble properties of every chain from Cα coordinates (F, N, 3) or one structure (N, 3), in nm.

    ``chain_lengths`` splits the N rows into chains (None: one chain); ``r0`` fixes the Flory prefactor (nm;
    None fits it, IDRome's convention).
    """
    acc = ConformationAccumulator(chain_lengths, r0=r0, rg_exponent=rg_exponent)
    acc.add(xyz)
    return acc.result()


#: Prefix of the per-chain conformation arrays in feature dictionaries and ``features md`` output files.
ARRAY_PREFIX = "conformation_"
#: The Flory fit's quality, stored beside ν (``conformation_nu_r2`` ...): not a property, so never probed.
FIT_QUALITY_NAMES: tuple[str, ...] = ("nu_r2", "nu_s_min", "nu_s_max")


def conformation_arrays(chains: Sequence[ChainConformation]) -> dict[str, np.ndarray]:
    """``conformation_<property>`` -> (n_chains,) arrays (plus ``_n_residues``, ``_n_frames``), e.g. for .npz files."""
    out = {f"{ARRAY_PREFIX}n_residues": np.array([c.n_residues for c in chains], dtype=np.int64),
           f"{ARRAY_PREFIX}n_frames": np.array([c.n_frames for c in chains], dtype=np.int64)}
    for name in PROPERTY_NAMES:
        out[f"{ARRAY_PREFIX}{name}"] = np.array([getattr(c, name) for c in chains], dtype=np.float64)
    out[f"{ARRAY_PREFIX}nu_r2"] = np.array([c.nu_r2 for c in chains], dtype=np.float64)
    for name in ("nu_s_min", "nu_s_max"):
        out[f"{ARRAY_PREFIX}{name}"] = np.array([getattr(c, name) for c in chains], dtype=np.int64)
    return out


def chains_from_arrays(arrays: Any) -> list[ChainConformation]:
    """Inverse of :func:`conformation_arrays` (from a feature dict or a loaded .npz); [] when absent."""
    key = f"{ARRAY_PREFIX}n_residues"
    if key not in arrays:
        return []
    n = len(arrays[key])
    quality = f"{ARRAY_PREFIX}nu_r2" in arrays  # absent from files written before the fit's quality was kept
    return [ChainConformation(
        n_residues=int(arrays[key][k]), n_frames=int(arrays[f"{ARRAY_PREFIX}n_frames"][k]),
        **{name: float(arrays[f"{ARRAY_PREFIX}{name}"][k]) for name in PROPERTY_NAMES},
        **({"nu_r2": float(arrays[f"{ARRAY_PREFIX}nu_r2"][k]), "nu_s_min": int(arrays[f"{ARRAY_PREFIX}nu_s_min"][k]),
            "nu_s_max": int(arrays[f"{ARRAY_PREFIX}nu_s_max"][k])} if quality else {}),
    ) for k in range(n)]
