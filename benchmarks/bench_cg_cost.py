"""Cost of the coarse-grained path per frame, and the projected CPU time for IDRome.

For a ~100- and a ~300-residue disordered chain, written as a CALVADOS-like PDB + DCD: the integrated
``extract_md`` path on the one-bead input (Cα properties only, and ``backmap="pulchra"``: back-mapping, hydrogens
with every atom but Cα relaxed, all features), in ms per frame on one process, and its parts measured one by one
(back-mapping with PULCHRA; adding hydrogens with OpenMM, Amber ff14SB, hydrogens alone and with every atom but Cα
relaxed, which removes the clashes PULCHRA leaves in such chains; the all-atom features of the rebuilt frames).
The chains are self-avoiding random walks with CALVADOS geometry (0.38 nm bonds, Cα-Cα-Cα angles 85-150°,
non-bonded beads ≥ 0.45 nm apart) and an IDR-like composition (rich in S, P, G, E, K, Q), each frame an
independent conformation, as frames of a long CALVADOS run are nearly decorrelated.

Projection: IDRome holds 28,058 chains. Each CALVADOS trajectory is assumed to hold 1,000 frames (the IDRome
release's frame count is not known here: scale linearly), used whole or every 10th (stride 10, 100 frames).
Chain lengths are not known here either, so the projection is given as if every chain had the measured length
(100 and 300 residues bracket most IDRs).

Run: PYTHONPATH=src python benchmarks/bench_cg_cost.py [--frames 10] [--lengths 100 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.features import extract_md
from seqdance.features.inputs.backmapping import Backmapper
from seqdance.features.inputs.coarse_grained import CALVADOS_BOND_NM, bead_topology
from seqdance.features.inputs.hydrogens import HydrogenAdder, overlapping_atoms
from seqdance.features.md.properties import CalphaFluctuations

IDROME_CHAINS = 28_058
IDROME_FRAMES = 1_000
#: IDR-like composition (per cent), from the disorder-promoting residues' typical enrichment.
COMPOSITION = {"S": 11, "P": 9, "G": 8, "E": 9, "K": 7, "Q": 6, "A": 7, "D": 6, "R": 5, "T": 6, "N": 5, "L": 5,
               "V": 3, "M": 2, "H": 2, "F": 2, "Y": 2, "I": 2, "C": 1, "W": 1}
THREE = {"A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU", "G": "GLY",
         "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO", "S": "SER",
         "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL"}


def random_sequence(n: int, rng: np.random.Generator) -> str:
    letters = list(COMPOSITION)
    p = np.array([COMPOSITION[a] for a in letters], dtype=float)
    return "".join(rng.choice(letters, size=n, p=p / p.sum()))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def self_avoiding_walk(n: int, rng: np.random.Generator, *, bond: float = CALVADOS_BOND_NM,
                       angle_deg: tuple[float, float] = (85.0, 150.0), min_dist: float = 0.45) -> np.ndarray:
    """(n, 3) nm Cα positions of one self-avoiding chain grown bead by bead (restarts when stuck)."""
    while True:
        xyz = np.zeros((n, 3))
        xyz[1] = [bond, 0.0, 0.0]
        ok = True
        for i in range(2, n):
            b = _unit(xyz[i - 1] - xyz[i - 2])
            helper = _unit(np.cross(b, rng.normal(size=3)))
            for _ in range(100):
                theta = np.deg2rad(rng.uniform(*angle_deg))  # Cα-Cα-Cα angle
                phi = rng.uniform(-np.pi, np.pi)
                perp = np.cos(phi) * helper + np.sin(phi) * np.cross(b, helper)
                step = -np.cos(theta) * b + np.sin(theta) * perp
                candidate = xyz[i - 1] + bond * step
                if i < 3 or np.min(np.linalg.norm(xyz[: i - 2] - candidate, axis=1)) >= min_dist:
                    xyz[i] = candidate
                    break
            else:
                ok = False
                break
        if ok:
            return xyz


def bead_chain(sequence: str) -> md.Topology:
    top = md.Topology()
    chain = top.add_chain()
    for k, letter in enumerate(sequence, start=1):
        top.add_atom("CA", md.element.carbon, top.add_residue(THREE[letter], chain, resSeq=k))
    return top


def measure(n_res: int, n_frames: int, rng: np.random.Generator, folder: Path) -> dict[str, float]:
    sequence = random_sequence(n_res, rng)
    trace = np.stack([self_avoiding_walk(n_res, rng) for _ in range(n_frames)]).astype(np.float32)
    beads = bead_topology(bead_chain(sequence))
    out: dict[str, float] = {}

    t0 = time.perf_counter()
    fluctuations = CalphaFluctuations()
    fluctuations.add(trace)
    fluctuations.result()
    out["calpha_ms"] = (time.perf_counter() - t0) / n_frames * 1000

    mapper = Backmapper(beads, source="walk")
    t0 = time.perf_counter()
    heavy = mapper.frames(trace)
    out["backmap_ms"] = (time.perf_counter() - t0) / n_frames * 1000

    bonds = np.array([(a.index, b.index) for a, b in mapper.topology.bonds], dtype=np.int64)
    out["clashing_frames"] = sum(bool(len(overlapping_atoms(f.astype(np.float64), bonds, 0.1))) for f in heavy)

    t0 = time.perf_counter()
    adder = HydrogenAdder(mapper.topology, heavy[0], source="walk")
    out["hydrogens_setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    adder.frames(heavy)
    out["hydrogens_ms"] = (time.perf_counter() - t0) / n_frames * 1000
    out["atoms"] = adder.n_atoms

    relaxer = HydrogenAdder(mapper.topology, heavy[0], relax="all_but_calpha", source="walk")
    t0 = time.perf_counter()
    full = relaxer.frames(heavy)
    out["relax_ms"] = (time.perf_counter() - t0) / n_frames * 1000
    out["clashing_after_relax"] = sum(bool(len(overlapping_atoms(f.astype(np.float64), relaxer.bonds, 0.1)))
                                      for f in full)

    traj = md.Trajectory(full, adder.topology)
    pdb, dcd = folder / f"walk{n_res}.pdb", folder / f"walk{n_res}.dcd"
    traj[0].save_pdb(str(pdb))
    traj.save_dcd(str(dcd))
    t0 = time.perf_counter()
    extract_md(str(pdb), str(dcd))
    out["features_ms"] = (time.perf_counter() - t0) / n_frames * 1000

    # The integrated path: the trace as a CALVADOS-like PDB + DCD through extract_md.
    cg = md.Trajectory(trace, bead_chain(sequence))
    cg_pdb, cg_dcd = folder / f"cg{n_res}.pdb", folder / f"cg{n_res}.dcd"
    cg[0].save_pdb(str(cg_pdb))
    cg.save_dcd(str(cg_dcd))
    # Cα input alone on an IDRome-sized trajectory (1,000 frames: the measured walks, repeated and jittered by
    # 0.01 nm), where the fixed cost of reading the topology no longer dominates
    long = np.repeat(trace, -(-IDROME_FRAMES // n_frames), axis=0)[:IDROME_FRAMES]
    long = (long + rng.normal(scale=0.01, size=long.shape)).astype(np.float32)
    long_pdb, long_dcd = folder / f"cg{n_res}_long.pdb", folder / f"cg{n_res}_long.dcd"
    md.Trajectory(long[:1], cg.topology).save_pdb(str(long_pdb))
    md.Trajectory(long, cg.topology).save_dcd(str(long_dcd))
    t0 = time.perf_counter()
    extract_md(str(long_pdb), str(long_dcd))
    out["calpha_input_ms"] = (time.perf_counter() - t0) / IDROME_FRAMES * 1000
    t0 = time.perf_counter()
    result = extract_md(str(cg_pdb), str(cg_dcd), backmap="pulchra")
    out["backmapped_input_s"] = time.perf_counter() - t0
    out["backmapped_missing"] = len(result["missing_properties"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"seqdance CG-path cost; {os.cpu_count()} CPUs (shared machine: timings are indicative), "
          f"{args.frames} frames per chain\n")
    print("| residues | atoms (with H) | Cα props ms/frame | back-map ms/frame | frames with clashes | H setup s | "
          "H ms/frame | H + relax ms/frame (clashes left) | features ms/frame | sum of parts ms/frame | "
          "extract_md, Cα input ms/frame (1,000 frames) | extract_md --backmap ms/frame | "
          "IDRome CPU-h --backmap (1,000 frames) | IDRome CPU-h --backmap (stride 10) | IDRome CPU-h Cα input |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            m = measure(n, args.frames, rng, Path(tmp))
            parts = m["backmap_ms"] + m["relax_ms"] + m["features_ms"]
            # extract_md's time includes the once-per-chain set-up (hydrogen system, topology): per chain it is
            # paid once, so the projection splits it off
            per_frame = (m["backmapped_input_s"] - m["hydrogens_setup_s"]) / args.frames * 1000
            per_chain_s = per_frame / 1000 * IDROME_FRAMES + m["hydrogens_setup_s"]
            total_h = per_chain_s * IDROME_CHAINS / 3600
            strided_h = (per_frame / 1000 * IDROME_FRAMES / 10 + m["hydrogens_setup_s"]) * IDROME_CHAINS / 3600
            print(f"| {n} | {int(m['atoms'])} | {m['calpha_ms']:.2f} | {m['backmap_ms']:.0f} | "
                  f"{m['clashing_frames']}/{args.frames} | {m['hydrogens_setup_s']:.1f} | {m['hydrogens_ms']:.0f} | "
                  f"{m['relax_ms']:.0f} ({m['clashing_after_relax']}) | {m['features_ms']:.0f} | {parts:.0f} | "
                  f"{m['calpha_input_ms']:.2f} | {per_frame:.0f} | {total_h:,.0f} | {strided_h:,.0f} | "
                  f"{m['calpha_input_ms'] / 1000 * IDROME_FRAMES * IDROME_CHAINS / 3600:,.1f} |", flush=True)
    print(f"\nIDRome: {IDROME_CHAINS:,} chains x {IDROME_FRAMES:,} frames (or every 10th), as if every chain had "
          "that length; CPU-hours of one core from the integrated extract_md --backmap time (per frame, plus the "
          "hydrogen set-up once per chain; the work is per frame and per chain, so it spreads over cores). "
          "Clashes: frames with non-bonded atoms < 0.1 nm apart.")


if __name__ == "__main__":
    main()
