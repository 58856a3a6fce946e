"""Milliseconds per frame of every MD feature stage: the new path, today's path and MDTraj side by side.

    python benchmarks/bench_md_features.py [--quick] [--frames N] [--torch] [--no-end-to-end]

Systems: adenylate kinase from MDAnalysisTests (214 residues, 3341 atoms, PSF + 98-frame DCD) and the mdCATH
sample (52 residues, 834 atoms, 500 frames; ``$SEQDANCE_SHARED_DATA`` or ``../shared/data``).

Columns, per stage: the new path on 1 and 2 threads (SASA: :mod:`seqdance.features.md.sasa`, the compiled exact
Shrake-Rupley kernel with frames in parallel; other stages as before, with BLAS/OpenMP limited to that many
threads), today's path (SASA: MDTraj's ``shrake_rupley`` one frame per call, the previous default, still
``sasa="mdtraj"``) and MDTraj's own call where one exists (SASA: its multi-frame call, which is wrong after each
thread's first frame; DSSP and dihedrals are MDTraj calls in every path). Interactions are compared with the
straightforward full-distance-matrix formulation, :func:`straightforward_contacts` (tests use it as an
independent check of the KD-tree implementation). Then ``extract_md`` end to end (new vs today's path, 1 and 2
threads) and the projected CPU time of featurising ATLAS and mdCATH (assumptions printed with the figures).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import mdtraj as md
import numpy as np
from threadpoolctl import threadpool_limits

from seqdance.features.inputs.protein import build_protein_topology
from seqdance.features.inputs.topology import load_topology
from seqdance.features.inputs.trajectories import open_sources
from seqdance.features.md import extract_md
from seqdance.features.md.contact_geometry import ContactModel, build_contact_model
from seqdance.features.md.interactions import TYPE_INDEX, ContactFrequencies, detect_contacts
from seqdance.features.md.properties import (
    CoordinateCovariance,
    DihedralHistogram,
    dihedral_rows,
    dssp_counts,
    sasa_per_residue,
)
from seqdance.features.md.residue_sasa import ResidueSasa

SHARED = Path(os.environ.get("SEQDANCE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
THREADS = (1, 2)

#: Dataset sizes for the projection. ATLAS: 1,390 chains x 3 replicas x 100 ns; its trajectories are assumed
#: saved every 10 ps (10,000 frames per replica). mdCATH: 5,398 domains x 5 temperatures x 5 replicas, frames
#: every 1 ns; ~62 ms of simulated time in all, i.e. ~460 frames per trajectory on average.
ATLAS = {"trajectories": 1390 * 3, "frames": 10_000, "spacing": "10 ps"}
MDCATH = {"trajectories": 5398 * 25, "frames": 460, "spacing": "1 ns"}


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    cos = np.sum(u * v, axis=-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def straightforward_contacts(model: ContactModel, xyz: np.ndarray) -> set[tuple[int, int, int, int]]:
    """Records {(frame, type index, atom1, atom2)} from full per-frame distance matrices (no neighbour search)."""
    c = model.criteria
    heavy = model.heavy
    out: set[tuple[int, int, int, int]] = set()
    for f, frame in enumerate(np.asarray(xyz, dtype=np.float64)):
        hx = frame[heavy]
        dist = np.sqrt(((hx[:, None, :] - hx[None, :, :]) ** 2).sum(-1))
        upper = np.triu(np.ones_like(dist, dtype=bool), k=1)
        a, b = heavy[:, None], heavy[None, :]
        same_chain = model.chain[a] == model.chain[b]
        gap = np.abs(model.resseq[a] - model.resseq[b])
        ra, rb = model.residue[a], model.residue[b]
        key = np.minimum(ra, rb) * model.n_residues_topology + np.maximum(ra, rb)
        disulfide = np.isin(key, model.disulfide_keys)
        vdw = upper & (dist < model.radius[:, None] + model.radius[None, :] + c.vdw_epsilon / 10)
        vdw &= ~(same_chain & (gap < c.vdw_res_diff)) & ~disulfide
        hp = vdw & model.hydrophobic[:, None] & model.hydrophobic[None, :]
        ionic = (model.anion[:, None] & model.cation[None, :]) | (model.cation[:, None] & model.anion[None, :])
        sb = upper & ionic & (dist <= c.salt_bridge_distance / 10)
        hb_pairs = upper & model.polar[:, None] & model.polar[None, :] & (dist <= c.hbond_distance / 10)
        hb_pairs &= ~(same_chain & (gap < c.hbond_res_diff)) & (ra != rb)
        records = []
        for mask, name in ((vdw, "vdw"), (hp, "hp"), (sb, "sb")):
            i, j = np.nonzero(mask)
            records += [(TYPE_INDEX[name], heavy[p], heavy[q]) for p, q in zip(i, j)]
        for p, q in zip(*np.nonzero(hb_pairs)):
            ok = False
            for donor, acceptor in ((p, q), (q, p)):
                for h in model.hydrogens[donor]:
                    if h >= 0 and _angle_deg(hx[donor] - frame[h], hx[acceptor] - frame[h]) >= 180 - c.hbond_angle:
                        ok = True
            if ok:
                n_bb = int(model.backbone[p]) + int(model.backbone[q])
                records.append((TYPE_INDEX[("hbss", "hbsb", "hbbb")[n_bb]], heavy[p], heavy[q]))
        rings = frame[model.rings]
        centre = rings.mean(axis=1)
        normal = np.cross(rings[:, 1] - rings[:, 0], rings[:, 2] - rings[:, 0])
        for k in range(len(model.rings)):
            for cation in model.pc_cations:
                if model.residue[cation] == model.residue[model.rings[k, 0]]:
                    continue
                v = frame[cation] - centre[k]
                theta = _angle_deg(normal[k], v)
                if np.linalg.norm(v) <= c.pi_cation_distance / 10 and min(theta, 180 - theta) <= c.pi_cation_angle:
                    records.append((TYPE_INDEX["pc"], cation, model.ring_label_atom[k]))
            for m in range(k + 1, len(model.rings)):
                v = centre[m] - centre[k]
                d = np.linalg.norm(v)
                theta = _angle_deg(normal[k], normal[m])
                psi = min(min(t, 180 - t) for t in (_angle_deg(normal[k], v), _angle_deg(normal[m], v)))
                gap_nm = np.linalg.norm(rings[k][:, None] - rings[m][None], axis=-1).min()
                if d <= c.pi_stack_distance / 10 and gap_nm < 1.0 and min(theta, 180 - theta) <= c.pi_stack_angle \
                        and psi <= c.pi_stack_psi:
                    records.append((TYPE_INDEX["ps"], model.ring_label_atom[k], model.ring_label_atom[m]))
                if d <= c.t_stack_distance / 10 and gap_nm < 0.6 and abs(theta - 90) <= c.t_stack_angle \
                        and psi <= c.t_stack_psi:
                    records.append((TYPE_INDEX["ts"], model.ring_label_atom[k], model.ring_label_atom[m]))
        for kind, p, q in records:
            first, second = (p, q) if model.label_rank[p] < model.label_rank[q] else (q, p)
            out.add((f, int(kind), int(first), int(second)))
    return out


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    start = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = fn()
    return (time.perf_counter() - start) / repeat, result


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:10.2f}" if seconds is not None else f"{'-':>10s}"


def stage_table(label: str, topology: str, trajectory: str, n_frames: int, naive_frames: int,
                with_torch: bool) -> dict[str, float]:
    """Print ms/frame per stage and column; returns the SASA figures for the summary."""
    t_read, loaded = _timed(lambda: load_topology(topology))
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes)
    source = open_sources(loaded, [trajectory])[0]
    start = time.perf_counter()
    chunk = next(source.chunks(protein.atom_indices, start=0, stop=n_frames, stride=1, chunk_frames=n_frames))
    t_frames = (time.perf_counter() - start) / len(chunk)
    traj = md.Trajectory(chunk.xyz.copy(), protein.topology)
    F = traj.n_frames
    model = build_contact_model(protein, traj.xyz[0])
    ca = traj.topology.select("name CA")

    def interactions() -> None:
        ContactFrequencies(model, protein.n_residues).add(detect_contacts(model, traj.xyz), F)

    def dihedrals() -> None:
        for kind in ("phi", "psi", "chi"):
            idx, res = dihedral_rows(kind, traj, protein.atom_residue, traj.xyz[0])
            DihedralHistogram(protein.n_residues).add(res, md.compute_dihedrals(traj, idx))

    def fluctuations() -> None:
        moved = md.Trajectory(traj.xyz.copy(), traj.topology)
        moved.superpose(traj, 0, atom_indices=ca)
        cov = CoordinateCovariance()
        cov.add(moved.xyz[:, ca])
        cov.rmsf()
        cov.correlation()

    unchanged = {"DSSP 8-class (MDTraj)": lambda: dssp_counts(traj, protein.residue_rows),
                 "phi/psi/chi1 histograms": dihedrals,
                 "interactions (KD-tree)": interactions,
                 "superpose + RMSF + Cα correlation": fluctuations}
    new: dict[str, dict[int, float]] = {"SASA": {}}
    new.update({name: {} for name in unchanged})
    engines = {t: ResidueSasa(protein.topology, protein.residue_rows, engine="numba", threads=t) for t in THREADS}
    engines[1](traj.xyz[:2])  # compile (or load the cached machine code) before timing
    engines[2](traj.xyz[:2])
    for t in THREADS:
        with threadpool_limits(limits=t):
            new["SASA"][t] = _timed(lambda t=t: engines[t](traj.xyz))[0] / F
            for name, fn in unchanged.items():
                new[name][t] = _timed(fn)[0] / F
    with threadpool_limits(limits=1):
        today = _timed(lambda: sasa_per_residue(traj, protein.residue_rows))[0] / F
    mdtraj_batched = _timed(lambda: md.shrake_rupley(traj, mode="residue"))[0] / F
    naive = _timed(lambda: straightforward_contacts(model, traj.xyz[:naive_frames]))[0] / min(naive_frames, F)
    torch_cpu = None
    if with_torch:
        import torch

        from seqdance.features.md.sasa_torch import sasa_atoms_torch

        torch_frames = traj.xyz[: min(F, 4)]
        torch.set_num_threads(1)
        torch_cpu = _timed(lambda: sasa_atoms_torch(torch_frames, engines[1].radii))[0] / len(torch_frames)

    print(f"\n{label}: {protein.n_residues} residues, {protein.n_atoms} protein atoms, {F} frames "
          f"(topology read {t_read:.2f} s)")
    print(f"  {'ms per frame':<38s}{'new 1 thr':>10s}{'new 2 thr':>10s}{'today':>10s}{'MDTraj':>10s}")
    print(f"  {'read frames (protein atoms)':<38s}{_ms(t_frames)}{_ms(t_frames)}{_ms(t_frames)}{_ms(None)}")
    print(f"  {'SASA (Shrake-Rupley, 960 points)':<38s}{_ms(new['SASA'][1])}{_ms(new['SASA'][2])}{_ms(today)}"
          f"{_ms(mdtraj_batched)}")
    for name in unchanged:
        mdtraj_col = new[name][1] if "MDTraj" in name or "histograms" in name else None
        print(f"  {name:<38s}{_ms(new[name][1])}{_ms(new[name][2])}{_ms(new[name][1])}{_ms(mdtraj_col)}")
    print(f"  {'interactions, full distance matrix':<38s}{_ms(None)}{_ms(None)}{_ms(None)}{_ms(None)}"
          f"  reference formulation: {naive * 1e3:.2f}")
    if torch_cpu is not None:
        print(f"  {'SASA, torch path on CPU (1 thread)':<38s}{_ms(torch_cpu)}")
    print(f"  today = MDTraj's shrake_rupley one frame per call (exact); MDTraj = its multi-frame call on "
          f"{os.cpu_count()} OpenMP threads (wrong after each thread's first frame); other stages are unchanged")
    print(f"  SASA: new path {today / new['SASA'][1]:.1f}x faster than today's per core, "
          f"{today / new['SASA'][2]:.1f}x on 2 threads; {mdtraj_batched / new['SASA'][1]:.1f}x MDTraj's "
          "multi-frame call")
    return {"sasa_new_1": new["SASA"][1], "sasa_today": today}


def end_to_end(label: str, topology: str, trajectory: str, n_frames: int) -> dict[str, float]:
    """extract_md seconds per frame: new path (1 and 2 threads) against today's path (MDTraj SASA per frame)."""
    extract_md(topology, trajectory, stop=2)  # warm-up: imports, compiled kernels
    out: dict[str, float] = {}
    for t in THREADS:
        with threadpool_limits(limits=t):
            out[f"new_{t}"] = _timed(lambda t=t: extract_md(topology, trajectory, stop=n_frames, threads=t))[0]
    with threadpool_limits(limits=1):
        out["today"] = _timed(lambda: extract_md(topology, trajectory, stop=n_frames, sasa="mdtraj"))[0]
    out = {k: v / n_frames for k, v in out.items()}
    print(f"\n{label}: extract_md end to end, {n_frames} frames, ms per frame")
    print(f"  today's path (MDTraj SASA per frame, 1 thread) {out['today'] * 1e3:9.1f}")
    for t in THREADS:
        print(f"  new path, {t} thread{'s' if t > 1 else ' '}                      {out[f'new_{t}'] * 1e3:9.1f}  "
              f"{out['today'] / out[f'new_{t}']:.1f}x faster")
    return out


def projection(per_frame: dict[str, float]) -> None:
    """CPU-hours of featurising ATLAS and mdCATH at the measured cost of adenylate kinase per frame."""
    print("\nProjected CPU time (1 core), every chain costing what adenylate kinase (214 res., 3341 atoms) costs "
          "per frame; cost grows ~linearly with atoms:")
    for name, spec in (("ATLAS", ATLAS), ("mdCATH", MDCATH)):
        for stride in ((1, 10) if name == "ATLAS" else (1,)):
            frames = spec["trajectories"] * spec["frames"] // stride
            today = frames * per_frame["today"] / 3600
            new = frames * per_frame["new_1"] / 3600
            print(f"  {name:<7s} {spec['trajectories']:>7,d} trajectories x {spec['frames'] // stride:>6,d} frames "
                  f"(every {spec['spacing']}{f', stride {stride}' if stride > 1 else ''}): today "
                  f"{today:>9,.0f} CPU-h, new {new:>8,.0f} CPU-h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames only (a smoke run)")
    parser.add_argument("--frames", type=int, default=None, help="frames per system (default 98, quick 4)")
    parser.add_argument("--torch", action="store_true", help="also time the torch SASA path on CPU")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the extract_md runs")
    args = parser.parse_args()
    n = args.frames or (4 if args.quick else 98)
    naive = min(n, 2 if args.quick else 10)
    import MDAnalysisTests.datafiles as data

    systems = [("adenylate kinase (MDAnalysisTests PSF + DCD)", data.PSF, data.DCD)]
    mdcath = SHARED / "md" / "mdcath_2hbaA00"
    if mdcath.is_dir():
        systems.append(("mdCATH 2hbaA00 (PDB + XTC, 320 K)", str(mdcath / "2hbaA00.pdb"),
                        str(mdcath / "2hbaA00_320_0.xtc")))
    else:
        print(f"\n(mdCATH sample not found at {mdcath}; skipped)")
    for label, top, trj in systems:
        stage_table(label, top, trj, n, naive, args.torch)
    if not args.no_end_to_end:
        per_frame = None
        for label, top, trj in systems:
            result = end_to_end(label, top, trj, n)
            per_frame = per_frame or result
        projection(per_frame)


if __name__ == "__main__":
    main()
