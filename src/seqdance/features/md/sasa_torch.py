"""Shrake-Rupley SASA with torch for batches of frames (GPU when asked), bit-identical to :mod:`.sasa`.

The same float32 definitions as the numba kernel (and MDTraj): neighbours where ((dx² + dy²) + dz²) < (r_i + r_k)²,
points x_i + r_i·s, a point buried when some neighbour has ((dx² + dy²) + dz²) < r_k². Every step is a separate
elementwise torch operation (no matmul, no fused multiply-add, no reductions over coordinates), so each rounds
to float32 exactly as the scalar code does, on CPU and on CUDA. Work is blocked over frames × atoms so that no
intermediate exceeds ``block_elements`` elements (bounded memory whatever the system size); the neighbour test
is all-pairs per block (O(N²) per frame, cheap on a GPU for proteins).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from seqdance.features.md.sasa import (
    _COINCIDENT_R2,
    N_SPHERE_POINTS,
    _as_frames,
    area_factors,
    check_coincident,
    sphere_points,
)

#: Largest number of elements of one (frames × atoms × points × neighbours) intermediate: small on CPU, where
#: cache-sized blocks are fastest (2^18: ~3× faster than 2^25), large on a GPU.
CPU_BLOCK_ELEMENTS = 1 << 18
GPU_BLOCK_ELEMENTS = 1 << 25


def _squared_distance(ax: torch.Tensor, ay: torch.Tensor, az: torch.Tensor,
                      bx: torch.Tensor, by: torch.Tensor, bz: torch.Tensor) -> torch.Tensor:
    """((dx·dx + dy·dy) + dz·dz) in float32, one rounding per operation (MDTraj's order)."""
    dx = ax - bx
    dy = ay - by
    dz = az - bz
    return (dx * dx + dy * dy) + dz * dz


def _neighbour_lists(x: torch.Tensor, radii: torch.Tensor, rows: slice, bad: np.ndarray, frame0: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded neighbour indices (F, B, K) of atoms ``rows`` and a validity mask, by MDTraj's float32 test."""
    xi = x[:, rows]  # (F, B, 3)
    r2 = _squared_distance(xi[..., 0, None], xi[..., 1, None], xi[..., 2, None],
                           x[:, None, :, 0], x[:, None, :, 1], x[:, None, :, 2])  # (F, B, N)
    cut = radii[rows, None] + radii[None, :]
    within = r2 < cut * cut
    atom = torch.arange(rows.start, rows.stop, device=x.device)
    within[:, torch.arange(len(atom), device=x.device), atom] = False  # not its own neighbour
    coincident = within & (r2 < float(_COINCIDENT_R2))
    if bool(coincident.any()):
        f, b, j = (int(v) for v in torch.nonzero(coincident)[0])
        if bad[frame0 + f, 0] < 0:
            bad[frame0 + f] = (rows.start + b, j)
    counts = within.sum(dim=-1)
    k_max = max(int(counts.max()), 1) if counts.numel() else 1
    # stable sort puts the neighbours (True) first in atom order; the first k_max columns hold them all
    order = torch.sort(within.to(torch.int8), dim=-1, descending=True, stable=True).indices[..., :k_max]
    valid = torch.arange(k_max, device=x.device) < counts[..., None]
    return order, valid


@torch.no_grad()
def sasa_atoms_torch(xyz: np.ndarray, radii: np.ndarray, *, n_sphere_points: int = N_SPHERE_POINTS,
                     device: str | torch.device = "cpu", block_elements: int | None = None,
                     atom_names: Sequence[str] | None = None, frame_numbers: Sequence[int] | None = None,
                     where: str = "") -> np.ndarray:
    """(F, N) float32 SASA (nm²) of every atom in every frame, computed with torch on ``device``.

    Equal to :func:`seqdance.features.md.sasa.sasa_atoms` bit for bit. ``block_elements`` bounds the size of the
    largest intermediate (default 2^18 elements on CPU, 2^25 = 128 MiB of float32 on a GPU).
    """
    frames, radii = _as_frames(xyz, radii)
    device = torch.device(device)
    n_frames, n_atoms = frames.shape[:2]
    points = torch.tensor(sphere_points(n_sphere_points), device=device)
    n_points = points.shape[0]
    factor = torch.tensor(area_factors(radii, n_sphere_points), device=device)
    r = torch.tensor(radii, device=device)
    r2 = r * r
    out = np.empty((n_frames, n_atoms), dtype=np.float32)
    bad = np.full((n_frames, 2), -1, dtype=np.int64)
    if n_frames == 0 or n_atoms == 0:
        return out
    if block_elements is None:
        block_elements = CPU_BLOCK_ELEMENTS if device.type == "cpu" else GPU_BLOCK_ELEMENTS
    block_elements = max(int(block_elements), n_points * 4)
    frames_per_block = max(1, min(n_frames, block_elements // max(1, n_atoms * n_atoms)))
    sx, sy, sz = points[:, 0], points[:, 1], points[:, 2]
    for f0 in range(0, n_frames, frames_per_block):
        x = torch.tensor(frames[f0:f0 + frames_per_block], device=device)  # (F, N, 3), a copy
        n_f = x.shape[0]
        # atoms per block: the all-pairs test is (F, B, N) and the point test (F, B, P, K)
        rows_per_block = max(1, min(n_atoms, block_elements // max(1, n_f * n_atoms)))
        for a0 in range(0, n_atoms, rows_per_block):
            rows = slice(a0, min(n_atoms, a0 + rows_per_block))
            neighbours, valid = _neighbour_lists(x, r, rows, bad, f0)
            k_max = neighbours.shape[-1]
            # points of these atoms, then as many atoms at a time as fit with all their neighbours
            step = max(1, block_elements // max(1, n_f * n_points * k_max))
            for b0 in range(0, rows.stop - rows.start, step):
                sub = slice(b0, min(rows.stop - rows.start, b0 + step))
                atoms = slice(rows.start + sub.start, rows.start + sub.stop)
                xi = x[:, atoms]  # (F, b, 3)
                ri = r[atoms]
                px = xi[..., 0, None] + ri[:, None] * sx  # (F, b, P): product rounded, then the sum
                py = xi[..., 1, None] + ri[:, None] * sy
                pz = xi[..., 2, None] + ri[:, None] * sz
                idx = neighbours[:, sub]  # (F, b, K)
                ok = valid[:, sub]
                flat = idx.reshape(n_f, -1)
                nx = torch.gather(x[..., 0], 1, flat).reshape(idx.shape)
                ny = torch.gather(x[..., 1], 1, flat).reshape(idx.shape)
                nz = torch.gather(x[..., 2], 1, flat).reshape(idx.shape)
                nr2 = torch.where(ok, r2[idx], torch.full_like(nx, -1.0))  # padding never occludes
                d2 = _squared_distance(px[..., :, None], py[..., :, None], pz[..., :, None],
                                       nx[..., None, :], ny[..., None, :], nz[..., None, :])  # (F, b, P, K)
                buried = (d2 < nr2[..., None, :]).any(dim=-1)
                accessible = n_points - buried.sum(dim=-1)
                area = accessible.to(torch.float32) * factor[atoms]
                out[f0:f0 + n_f, atoms] = area.cpu().numpy()
    check_coincident(bad, frames, atom_names, frame_numbers, where)
    return out
