"""Martini inputs: how far the Cα properties read from backbone (BB) beads lie from the all-atom run's Cα values.

Each real all-atom trajectory is mapped to a Martini-like model (a BB bead at the centre of N, CA, C, O and one
side-chain bead per residue, as martinize maps backbones) and run through ``extract_md``; its RMSF, movement
correlation and conformational properties are compared with those of the all-atom run (which reads Cα), and
the time per frame of both paths is printed side by side.

    python benchmarks/bench_martini_trace.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.features import extract_md

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _cg_files import write_martini_files  # the test suite's Martini-like mapping


def systems(shared: Path) -> list[tuple[str, str, str, int]]:
    from MDAnalysisTests.datafiles import DCD, PSF

    md_dir = shared / "md" / "mdcath_2hbaA00"
    ref = shared / "reference" / "md"
    return [
        ("mdCATH 2hbaA00 (every 5th of 500)", str(md_dir / "2hbaA00.pdb"), str(md_dir / "2hbaA00_320_0.xtc"), 5),
        ("ATLAS 3tvj_I (10 frames)", str(ref / "3tvj_I.pdb"), str(ref / "3tvj_I_10frames.dcd"), 1),
        ("adenylate kinase (98 frames)", PSF, DCD, 1),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print("| system | residues | RMSF r | RMSF max abs Δ (nm) | RMSF mean rel. Δ | correlation r (pairs) | "
          "max abs Δ corr | Rg rel. Δ | Re rel. Δ | ms/frame all-atom | ms/frame Martini |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, top, traj_path, stride in systems(args.shared):
        traj = md.load(traj_path, top=top, stride=stride)
        with tempfile.TemporaryDirectory() as folder:
            pdb, dcd, _ = write_martini_files(traj, Path(folder), "cg")
            began = time.perf_counter()
            reference = extract_md(top, traj_path, stride=stride, missing_hydrogens="skip")
            all_atom_ms = 1e3 * (time.perf_counter() - began) / traj.n_frames
            began = time.perf_counter()
            martini = extract_md(pdb, dcd)
            martini_ms = 1e3 * (time.perf_counter() - began) / traj.n_frames
        a, b = reference["rmsf"], martini["rmsf"]
        upper = np.triu_indices(len(a), 1)
        ca, cb = reference["corr"][upper], martini["corr"][upper]

        rg, ree = (abs(martini[key][0] / reference[key][0] - 1)
                   for key in ("conformation_rg_mean", "conformation_ree_mean"))
        print(f"| {label} | {len(a)} | {np.corrcoef(a, b)[0, 1]:.4f} | {np.abs(a - b).max():.4f} | "
              f"{np.mean(np.abs(b - a) / a):.1%} | {np.corrcoef(ca, cb)[0, 1]:.4f} | {np.abs(ca - cb).max():.3f} | "
              f"{rg:.2%} | {ree:.2%} | {all_atom_ms:.1f} | "
              f"{martini_ms:.2f} |")


if __name__ == "__main__":
    main()
