"""Seconds per frame of every MD feature group, and the interaction step against a straightforward version.

    python benchmarks/bench_md_features.py [--quick] [--frames N]

Systems: adenylate kinase from MDAnalysisTests (214 residues, 3341 atoms, PSF + 98-frame DCD) and the mdCATH
sample ../shared/data/md/mdcath_2hbaA00 (52 residues, 500 frames). The straightforward interaction step,
:func:`straightforward_contacts`, computes the full heavy-atom distance matrix of every frame and applies the
same criteria with dense masks; tests use it as an independent check of the KD-tree implementation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.features.contact_geometry import ContactModel, build_contact_model
from seqdance.features.interactions import TYPE_INDEX, ContactFrequencies, detect_contacts
from seqdance.features.md_properties import (
    CoordinateCovariance,
    DihedralHistogram,
    dihedral_rows,
    dssp_counts,
    sasa_per_residue,
)
from seqdance.features.md_topology import build_protein_topology
from seqdance.features.trajectory_io import load_topology, open_sources

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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


def benchmark_system(label: str, topology: str, trajectory: str, n_frames: int, naive_frames: int) -> None:
    t_read, loaded = _timed(lambda: load_topology(topology))
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes)
    source = open_sources(loaded, [trajectory])[0]
    start = time.perf_counter()
    chunk = next(source.chunks(protein.atom_indices, start=0, stop=n_frames, stride=1, chunk_frames=n_frames))
    t_frames = (time.perf_counter() - start) / len(chunk)
    traj = md.Trajectory(chunk.xyz.copy(), protein.topology)
    F = traj.n_frames
    model = build_contact_model(protein, traj.xyz[0])
    freq = ContactFrequencies(model, protein.n_residues)

    rows = {}
    rows["read frames (protein atoms)"] = t_frames
    t, _ = _timed(lambda: freq.add(detect_contacts(model, traj.xyz), F))
    rows["interactions (KD-tree, this package)"] = t / F
    sub = traj.xyz[:naive_frames]
    t, _ = _timed(lambda: straightforward_contacts(model, sub))
    rows["interactions (full distance matrix)"] = t / len(sub)
    t, _ = _timed(lambda: sasa_per_residue(traj, protein.residue_rows))
    rows["SASA (MDTraj Shrake-Rupley, per frame)"] = t / F
    t, _ = _timed(lambda: md.shrake_rupley(traj, mode="residue"))
    rows["  (MDTraj batched call, for comparison)"] = t / F
    t, _ = _timed(lambda: dssp_counts(traj, protein.residue_rows))
    rows["DSSP 8-class"] = t / F

    def dihedrals() -> None:
        for kind in ("phi", "psi", "chi"):
            idx, res = dihedral_rows(kind, traj, protein.atom_residue, traj.xyz[0])
            DihedralHistogram(protein.n_residues).add(res, md.compute_dihedrals(traj, idx))

    t, _ = _timed(dihedrals)
    rows["phi/psi/chi1 histograms"] = t / F
    ca = traj.topology.select("name CA")

    def fluctuations() -> None:
        moved = md.Trajectory(traj.xyz.copy(), traj.topology)
        moved.superpose(traj, 0, atom_indices=ca)
        cov = CoordinateCovariance()
        cov.add(moved.xyz[:, ca])
        cov.rmsf()
        cov.correlation()

    t, _ = _timed(fluctuations)
    rows["superpose + RMSF + Cα correlation"] = t / F
    print(f"\n{label}: {protein.n_residues} residues, {protein.n_atoms} protein atoms, {F} frames "
          f"(topology read {t_read:.2f} s)")
    for name, seconds in rows.items():
        print(f"  {name:<42s} {seconds * 1e3:9.2f} ms/frame")
    ratio = rows["interactions (KD-tree, this package)"] / rows["SASA (MDTraj Shrake-Rupley, per frame)"]
    speedup = rows["interactions (full distance matrix)"] / rows["interactions (KD-tree, this package)"]
    print(f"  interactions / SASA = {ratio:.3f} (goal <= 0.5); KD-tree vs full matrix: {speedup:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames only (a smoke run)")
    parser.add_argument("--frames", type=int, default=None, help="frames per system (default 98, quick 4)")
    args = parser.parse_args()
    n = args.frames or (4 if args.quick else 98)
    naive = min(n, 2 if args.quick else 10)
    import MDAnalysisTests.datafiles as data

    benchmark_system("adenylate kinase (MDAnalysisTests PSF + DCD)", data.PSF, data.DCD, n, naive)
    mdcath = SHARED / "md" / "mdcath_2hbaA00"
    if mdcath.is_dir():
        benchmark_system("mdCATH 2hbaA00 (PDB + XTC, 320 K)", str(mdcath / "2hbaA00.pdb"),
                         str(mdcath / "2hbaA00_320_0.xtc"), n, naive)
    else:
        print(f"\n(mdCATH sample not found at {mdcath}; skipped)")


if __name__ == "__main__":
    main()
