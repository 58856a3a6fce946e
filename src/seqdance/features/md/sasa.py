"""Exact Shrake-Rupley SASA, equal to MDTraj's single-frame ``shrake_rupley``, several times faster per core.

Why by hand: MDTraj tests every atom pair for neighbours (O(N²)) and every sphere point against the neighbour
list one at a time, and its multi-frame call is wrong after each OpenMP thread's first frame (a work buffer is not
cleared), so seqdance had to call it frame by frame on one core — ~98% of ``features md``. This module computes
the same numbers with a cell list (linear in atoms), point tests vectorised over the sphere points of one
latitude band per neighbour, and frames in parallel across cores (compiled with numba; a thread pool runs blocks
of frames with the GIL released — no OpenMP runtime whose spinning threads would compete with MDTraj's or torch's).

Exactness: a sphere point is ~1e-3 nm², so every occlusion decision must match MDTraj's float32 arithmetic. The
definitions below follow it operation by operation: MDTraj's radii + probe (float32), the golden-section spiral
points (float32 from double trigonometry), point = x_i + r_i·s, squared distance ((dx² + dy²) + dz²) in float32
compared with r_k² (strict <), neighbours where the squared centre distance < (r_i + r_k)², area = count ×
((4π/n)·r_i)·r_i in float32, and residue sums in float32 in atom order. The latitude bands only skip points that
are farther than r_k + tol (tol ≫ float32 rounding) from neighbour k, so they never change a decision. Result:
bit-identical per-atom areas (tested on several real systems).

:mod:`seqdance.features.md.sasa_torch` computes the same numbers with torch for batches of frames on a GPU;
:class:`seqdance.features.md.residue_sasa.ResidueSasa` chooses between them (and MDTraj's per-frame call).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import pairwise

import numba
import numpy as np

from seqdance.errors import InputError, NonFiniteError

#: Probe radius (nm) and sphere points per atom: MDTraj's defaults, used by the reference.
PROBE_RADIUS_NM = 0.14
N_SPHERE_POINTS = 960


#: MDTraj aborts the whole process when two atoms are closer than this (squared, nm²); we raise instead.
_COINCIDENT_R2 = np.float32(1e-10)
#: Neighbour cells searched on each side of an atom's cell (cells are 1/_SPAN of the largest cutoff wide).
_SPAN = 2


def default_threads() -> int:
    """Threads for SASA frames: $OMP_NUM_THREADS if set (dataset build workers set it), else the usable cores."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=8)
def _sphere_points_cached(n: int) -> np.ndarray:
    f32 = np.float32
    inc = f32(math.pi * (3.0 - math.sqrt(5.0)))
    offset = f32(2.0 / n)
    half = float(offset) / 2.0
    points = np.empty((n, 3), dtype=np.float32)
    # Same mixed precision as MDTraj's generator: float products, double sums / sqrt / trigonometry.
    for i in range(n):
        y = f32(float(f32(f32(i) * offset)) - 1.0 + half)
        r = f32(math.sqrt(1.0 - float(f32(y * y))))
        phi = float(f32(f32(i) * inc))
        points[i] = (f32(math.cos(phi) * float(r)), y, f32(math.sin(phi) * float(r)))
    points.setflags(write=False)
    return points


def sphere_points(n: int = N_SPHERE_POINTS) -> np.ndarray:
    """(n, 3) float32 unit-sphere points of MDTraj's golden-section spiral, ordered by increasing y (read-only)."""
    if int(n) < 1:
        raise InputError(f"n_sphere_points must be >= 1, got {n}")
    return _sphere_points_cached(int(n))


def atom_radii(topology, probe_radius: float = PROBE_RADIUS_NM) -> np.ndarray:
    """(N,) float32 van der Waals radius + probe radius (nm) of every atom, from MDTraj's Shrake-Rupley table."""
    from mdtraj.geometry.sasa import _ATOMIC_RADII

    radii = []
    for atom in topology.atoms:
        element = atom.element
        symbol = getattr(element, "symbol", None)
        if symbol not in _ATOMIC_RADII:
            raise InputError(f"atom {atom} (index {atom.index}) has element {symbol!r}, which has no "
                             "Shrake-Rupley radius; fix the element column of the topology")
        radii.append(_ATOMIC_RADII[symbol])
    # the same expression as MDTraj (float32 array + Python float), so the sum rounds the same way
    return np.array(radii, np.float32) + probe_radius


def area_factors(radii: np.ndarray, n_sphere_points: int = N_SPHERE_POINTS) -> np.ndarray:
    """Area of one sphere point of each atom, ((4π/n)·r)·r in float32 as MDTraj computes it."""
    constant = np.float32(4.0 * math.pi / n_sphere_points)
    radii = np.asarray(radii, dtype=np.float32)
    return (constant * radii) * radii


# --- the compiled kernel ---------------------------------------------------------------------------------

@numba.njit(nogil=True, cache=True, boundscheck=False)
def _occlude_band(px, py, pz, occluded, xk, yk, zk, rk2, lo, hi):  # pragma: no cover - compiled
    """Mark the points lo..hi-1 that lie strictly inside sphere k (MDTraj's float32 test, vectorised)."""
    for p in range(np.uint64(lo), np.uint64(hi)):  # unsigned range: no wrap-around check, so LLVM vectorises
        dx = px[p] - xk
        dy = py[p] - yk
        dz = pz[p] - zk
        occluded[p] |= ((dx * dx + dy * dy) + dz * dz) < rk2


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _band_start(py, y, guess):  # pragma: no cover - compiled
    """First index of the ascending array py whose value is >= y, searched from a close guess."""
    n = py.shape[0]
    g = min(max(guess, 0), n)
    while g > 0 and py[g - 1] >= y:
        g -= 1
    while g < n and py[g] < y:
        g += 1
    return g


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _band_end(py, y, guess):  # pragma: no cover - compiled
    """First index of the ascending array py whose value is > y, searched from a close guess."""
    n = py.shape[0]
    g = min(max(guess, 0), n)
    while g > 0 and py[g - 1] > y:
        g -= 1
    while g < n and py[g] <= y:
        g += 1
    return g


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _frame_areas(xyz, radii, factor, sx, sy, sz, out, bad):  # pragma: no cover - compiled
    """Per-atom SASA of one frame into ``out``; ``bad`` receives the first coincident atom pair (else -1)."""
    n = xyz.shape[0]
    n_points = sx.shape[0]
    bad[0] = -1
    bad[1] = -1
    if n == 0:
        return
    # --- cell list: cells at least half as wide as the largest neighbour cutoff r_i + r_k, so every neighbour
    # lies within 2 cells (a 5x5x5 block holds ~40% fewer candidates than 3x3x3 cells of the full width)
    max_r = 0.0
    max_abs = 0.0
    lo = np.empty(3)
    hi = np.empty(3)
    for d in range(3):
        lo[d] = np.inf
        hi[d] = -np.inf
    for i in range(n):
        max_r = max(max_r, float(radii[i]))
        for d in range(3):
            v = float(xyz[i, d])
            lo[d] = min(lo[d], v)
            hi[d] = max(hi[d], v)
            max_abs = max(max_abs, abs(v))
    cell = (2.0 * max_r * (1.0 + 1e-5) + 1e-6) / _SPAN
    dims = np.empty(3, np.int64)
    total = 1
    for d in range(3):
        dims[d] = int((hi[d] - lo[d]) / cell) + 1
        total *= dims[d]
    limit = 8 * n + 64  # a sparse system gets coarser cells, never more memory than O(N)
    if total > limit:
        cell *= (total / limit) ** (1.0 / 3.0) * 1.001
        total = 1
        for d in range(3):
            dims[d] = int((hi[d] - lo[d]) / cell) + 1
            total *= dims[d]
    nx, ny, nz = dims[0], dims[1], dims[2]
    cx = np.empty(n, np.int64)
    cy = np.empty(n, np.int64)
    cz = np.empty(n, np.int64)
    start = np.zeros(total + 1, np.int64)
    for i in range(n):
        cx[i] = min(int((xyz[i, 0] - lo[0]) / cell), nx - 1)
        cy[i] = min(int((xyz[i, 1] - lo[1]) / cell), ny - 1)
        cz[i] = min(int((xyz[i, 2] - lo[2]) / cell), nz - 1)
        start[(cx[i] * ny + cy[i]) * nz + cz[i] + 1] += 1
    for c in range(total):
        start[c + 1] += start[c]
    fill = start[:total].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        c = (cx[i] * ny + cy[i]) * nz + cz[i]
        order[fill[c]] = i
        fill[c] += 1
    sxyz = np.empty((n, 3), np.float32)  # coordinates in cell order: the cells along z are contiguous
    srad = np.empty(n, np.float32)
    for q in range(n):
        for d in range(3):
            sxyz[q, d] = xyz[order[q], d]
        srad[q] = radii[order[q]]

    # A point farther than r_k + tol from centre k (exact arithmetic) can never pass the float32 test.
    tol = 1e-5 + 4e-7 * max_abs
    offset = 2.0 / n_points
    nb_x = np.empty(n, np.float32)
    nb_y = np.empty(n, np.float32)
    nb_z = np.empty(n, np.float32)
    nb_r2 = np.empty(n, np.float32)
    nb_lo = np.empty(n, np.int64)
    nb_hi = np.empty(n, np.int64)
    px = np.empty(n_points, np.float32)
    py = np.empty(n_points, np.float32)
    pz = np.empty(n_points, np.float32)
    occluded = np.empty(n_points, np.uint8)

    for i in range(n):
        xi = xyz[i, 0]
        yi = xyz[i, 1]
        zi = xyz[i, 2]
        ri = radii[i]
        rf = float(ri)
        m = 0
        for ax in range(max(cx[i] - _SPAN, 0), min(cx[i] + _SPAN + 1, nx)):
            for ay in range(max(cy[i] - _SPAN, 0), min(cy[i] + _SPAN + 1, ny)):
                first = start[(ax * ny + ay) * nz + max(cz[i] - _SPAN, 0)]
                last = start[(ax * ny + ay) * nz + min(cz[i] + _SPAN, nz - 1) + 1]
                for q in range(first, last):
                    j = order[q]
                    if j == i:
                        continue
                    xj = sxyz[q, 0]
                    yj = sxyz[q, 1]
                    zj = sxyz[q, 2]
                    dx = xi - xj
                    dy = yi - yj
                    dz = zi - zj
                    r2 = (dx * dx + dy * dy) + dz * dz
                    rj = srad[q]
                    cut = ri + rj
                    if r2 < cut * cut:
                        if r2 < _COINCIDENT_R2:
                            if bad[0] < 0:
                                bad[0] = i
                                bad[1] = j
                            continue
                        # latitude band of the sphere points that sphere j can reach (exact arithmetic + tol)
                        ex = float(xj) - float(xi)
                        ey = float(yj) - float(yi)
                        ez = float(zj) - float(zi)
                        dist = math.sqrt(ex * ex + ey * ey + ez * ez)
                        reach = float(rj) + tol
                        cos_cap = (rf * rf + dist * dist - reach * reach) / (2.0 * rf * dist)
                        if cos_cap >= 1.0:
                            continue
                        if cos_cap <= -1.0:
                            band_lo = 0
                            band_hi = n_points
                        else:
                            uy = ey / dist
                            sin_u = math.sqrt(max(0.0, 1.0 - uy * uy))
                            sin_cap = math.sqrt(max(0.0, 1.0 - cos_cap * cos_cap))
                            y_max = 1.0 if uy >= cos_cap else uy * cos_cap + sin_u * sin_cap
                            y_min = -1.0 if uy <= -cos_cap else uy * cos_cap - sin_u * sin_cap
                            # float32 points are unit vectors only to ~1e-7: widen the band by 1e-6
                            y_min -= 1e-6
                            y_max += 1e-6
                            band_lo = _band_start(sy, y_min, int((y_min + 1.0) / offset - 0.5))
                            band_hi = _band_end(sy, y_max, int((y_max + 1.0) / offset + 0.5))
                            if band_hi <= band_lo:
                                continue
                        nb_x[m] = xj
                        nb_y[m] = yj
                        nb_z[m] = zj
                        nb_r2[m] = rj * rj
                        nb_lo[m] = band_lo
                        nb_hi[m] = band_hi
                        m += 1
        if m == 0:
            out[i] = np.float32(n_points) * factor[i]
            continue
        for p in range(n_points):
            px[p] = xi + ri * sx[p]
            py[p] = yi + ri * sy[p]
            pz[p] = zi + ri * sz[p]
            occluded[p] = 0
        for k in range(m):
            _occlude_band(px, py, pz, occluded, nb_x[k], nb_y[k], nb_z[k], nb_r2[k], nb_lo[k], nb_hi[k])
        hidden = 0
        for p in range(n_points):
            hidden += occluded[p]
        out[i] = np.float32(n_points - hidden) * factor[i]


@numba.njit(nogil=True, cache=True)
def _areas_serial(xyz, radii, factor, sx, sy, sz, out, bad):  # pragma: no cover - compiled
    for f in range(xyz.shape[0]):
        _frame_areas(xyz[f], radii, factor, sx, sy, sz, out[f], bad[f])


@numba.njit(nogil=True, cache=True)
def _residue_sums(areas, atom_residue, n_residues):  # pragma: no cover - compiled
    out = np.zeros((areas.shape[0], n_residues), np.float32)
    for f in range(areas.shape[0]):
        for j in range(areas.shape[1]):
            out[f, atom_residue[j]] += areas[f, j]  # float32, atom order: MDTraj's accumulation
    return out


# --- public functions ----------------------------------------------------------------------------------

def _as_frames(xyz: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(xyz)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[-1] != 3:
        raise InputError(f"coordinates must have shape (frames, atoms, 3) or (atoms, 3), got {np.shape(xyz)}")
    radii = np.ascontiguousarray(radii, dtype=np.float32)
    if radii.shape != (frames.shape[1],):
        raise InputError(f"{radii.shape[0]} radii for {frames.shape[1]} atoms")
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    if not np.isfinite(frames).all():
        f, a = np.argwhere(~np.isfinite(frames).all(axis=-1))[0]
        raise NonFiniteError(f"SASA: frame {f}, atom {a} has a non-finite coordinate")
    return frames, radii


def check_coincident(bad: np.ndarray, xyz: np.ndarray, atom_names: Sequence[str] | None = None,
                     frame_numbers: Sequence[int] | None = None, where: str = "") -> None:
    """Raise the error MDTraj aborts the whole process for: two atoms (almost) on top of each other.

    ``bad`` (F, 2): the first coincident atom pair of each frame, or -1; ``frame_numbers`` and ``where`` (a file
    name) only shape the message.
    """
    rows = np.flatnonzero(bad[:, 0] >= 0)
    if rows.size:
        f = int(rows[0])
        i, j = sorted((int(bad[f, 0]), int(bad[f, 1])))
        names = f"{atom_names[i]} and {atom_names[j]}" if atom_names is not None else f"atoms {i} and {j}"
        frame = int(frame_numbers[f]) if frame_numbers is not None else f
        distance = float(np.linalg.norm(xyz[f, i].astype(np.float64) - xyz[f, j]))
        prefix = f"{where}: " if where else ""
        raise InputError(f"{prefix}frame {frame}: {names} are {distance:.1e} nm apart (coincident atoms); "
                         "Shrake-Rupley SASA is undefined there (MDTraj aborts) — check the topology and trajectory "
                         "for duplicated atoms")


def sasa_atoms(xyz: np.ndarray, radii: np.ndarray, *, n_sphere_points: int = N_SPHERE_POINTS,
               threads: int | None = None, atom_names: Sequence[str] | None = None,
               frame_numbers: Sequence[int] | None = None, where: str = "") -> np.ndarray:
    """(F, N) float32 SASA (nm²) of every atom in every frame, equal to MDTraj's single-frame call.

    ``xyz`` (F, N, 3) or (N, 3) nm; ``radii`` (N,) van der Waals + probe radius (:func:`atom_radii`). Frames run in
    parallel on ``threads`` threads (default :func:`default_threads`), each running the compiled kernel on a block
    of frames with the GIL released; 1 runs on the calling thread only. Memory: O(atoms + sphere points) per thread.
    Coincident atoms raise an :class:`InputError` naming them (``atom_names``), the frame (``frame_numbers``) and the
    file (``where``).
    """
    frames, radii = _as_frames(xyz, radii)
    points = sphere_points(n_sphere_points)
    sx, sy, sz = (np.ascontiguousarray(points[:, d]) for d in range(3))
    factor = area_factors(radii, n_sphere_points)
    out = np.empty(frames.shape[:2], dtype=np.float32)
    bad = np.empty((frames.shape[0], 2), dtype=np.int64)
    n_threads = default_threads() if threads is None else int(threads)
    if n_threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    n_threads = min(n_threads, max(1, frames.shape[0]))
    args = (radii, factor, sx, sy, sz)
    if n_threads == 1:
        _areas_serial(frames, *args, out, bad)
    else:
        # contiguous blocks of frames, one per thread; the kernel releases the GIL
        bounds = np.linspace(0, frames.shape[0], n_threads + 1).astype(int)
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="seqdance-sasa") as pool:
            jobs = [pool.submit(_areas_serial, frames[a:b], *args, out[a:b], bad[a:b])
                    for a, b in pairwise(bounds) if b > a]
            for job in jobs:
                job.result()
    check_coincident(bad, frames, atom_names, frame_numbers, where)
    return out


def residue_sums(atom_areas: np.ndarray, atom_residue: np.ndarray, n_residues: int) -> np.ndarray:
    """(F, R) float32 per-residue sums of per-atom areas, accumulated in float32 in atom order as MDTraj does."""
    areas = np.ascontiguousarray(atom_areas, dtype=np.float32)
    mapping = np.ascontiguousarray(atom_residue, dtype=np.int64)
    if areas.ndim != 2 or mapping.shape != (areas.shape[1],):
        raise InputError(f"atom_residue has shape {mapping.shape} for areas of shape {areas.shape}")
    if mapping.size and (mapping.min() < 0 or mapping.max() >= n_residues):
        raise InputError(f"atom_residue values must lie in [0, {n_residues})")
    return _residue_sums(areas, mapping, int(n_residues))
