"""Fidelity of back-mapping and of re-protonation, measured on real all-atom trajectories.

For each system: the original trajectory's MD features (extract_md) are the reference. Its frames are reduced to
Cα, back-mapped to heavy atoms, given hydrogens (:mod:`seqdance.features.inputs.hydrogens`), and the features are
extracted again; each property is compared with the reference:

* SASA: Pearson r (and mean relative error) of the per-residue mean and standard deviation;
* DSSP (8 classes): per-frame per-residue agreement overall, and per class the recall (original state kept)
  with the class's share in original and back-mapped frames;
* dihedrals phi/psi/chi1: total-variation distance between the per-residue 12-bin histograms (0 = same, 1 =
  disjoint), averaged over residues with the angle;
* the nine interaction types (``fraction`` frequencies): weighted overlap Σmin/Σmax, Pearson r over residue
  pairs, and the summed frequency back-mapped / original;
* Cα RMSF from the back-mapped frames vs the original (PULCHRA moves Cα by ≤ ~0.1 Å before building).

Re-protonation: the original frames stripped of hydrogens and re-protonated (Amber ff14SB and force-field-free
geometric placement), H-bond maps (hbbb, hbsb, hbss) compared with the original's: overlap, Pearson r, max
absolute difference (reference-mode frequencies as the store holds them, and fraction mode).

Back-mapping engines: ``pulchra`` (C PULCHRA via pypulchra) on every selected frame; on a few frames also
``pulchra-python`` (pure-Python port) and CGBack (diffusion model, via its command line, when installed).

Run: PYTHONPATH=src python benchmarks/bench_backmapping.py [--systems 2hba adk 3tvj] [--frames 50] [--subset 5]
     [--relax hydrogens|all_but_calpha] [--slow-engines pulchra-python cgback] [--skip-reprotonation]
Prints markdown tables (docs/coarse_grained.md holds one run's output).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features import extract_md
from seqdance.features.inputs.backmapping import Backmapper
from seqdance.features.inputs.coarse_grained import bead_topology, calpha_trace
from seqdance.features.inputs.hydrogens import HydrogenAdder
from seqdance.features.inputs.protein import build_protein_topology
from seqdance.schema import INTERACTION_NAMES, SS_DSSP_CODES

DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HBONDS = ("hbbb", "hbsb", "hbss")


@dataclass
class System:
    name: str
    topology: str
    trajectory: str
    stride: int


def systems() -> dict[str, System]:
    out = {
        "2hba": System("mdCATH 2hbaA00 (52 res)", str(DATA / "md/mdcath_2hbaA00/2hbaA00.pdb"),
                       str(DATA / "md/mdcath_2hbaA00/2hbaA00_320_0.xtc"), 10),
        "3tvj": System("ATLAS 3tvj_I (38 res)", str(DATA / "reference/md/3tvj_I.pdb"),
                       str(DATA / "reference/md/3tvj_I_10frames.dcd"), 1),
    }
    try:
        from MDAnalysisTests.datafiles import DCD, PSF

        out["adk"] = System("adenylate kinase (214 res)", PSF, DCD, 2)
    except ImportError:
        pass
    return out


def load_protein(system: System, n_frames: int) -> tuple[md.Trajectory, object]:
    """The selected frames (protein atoms, normalised names) as extract_md sees them, and the ProteinTopology."""
    traj = md.load(system.trajectory, top=system.topology, stride=system.stride)[:n_frames]
    protein = build_protein_topology(traj.topology)
    traj = traj.atom_slice(protein.atom_indices)
    traj.topology = protein.topology
    return traj, protein


def features(traj: md.Trajectory, folder: Path, tag: str, frequency: str = "fraction") -> dict:
    pdb, dcd = folder / f"{tag}.pdb", folder / f"{tag}.dcd"
    traj[0].save_pdb(str(pdb))
    traj.save_dcd(str(dcd))
    return extract_md(str(pdb), str(dcd), frequency=frequency)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    den = np.maximum(a, b).sum()
    return float(np.minimum(a, b).sum() / den) if den > 0 else float("nan")


def tv_distance(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    return float(0.5 * np.abs(a[ok] - b[ok]).sum(axis=1).mean()) if ok.any() else float("nan")


def dssp_codes(traj: md.Trajectory, rows: np.ndarray) -> np.ndarray:
    return md.compute_dssp(traj, simplified=False)[:, rows]


def compare(ref: dict, new: dict, ref_dssp: np.ndarray, new_dssp: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    out["sasa_mean_r"] = pearson(ref["sasa_mean"], new["sasa_mean"])
    out["sasa_mean_relerr"] = float(np.mean(np.abs(new["sasa_mean"] - ref["sasa_mean"]))
                                    / np.mean(ref["sasa_mean"]))
    out["sasa_std_r"] = pearson(ref["sasa_std"], new["sasa_std"])
    out["dssp_overall"] = float((ref_dssp == new_dssp).mean())
    for code in SS_DSSP_CODES:
        mask = ref_dssp == code
        out[f"dssp_recall_{code}"] = float((new_dssp[mask] == code).mean()) if mask.any() else float("nan")
        out[f"dssp_share_ref_{code}"] = float(mask.mean())
        out[f"dssp_share_new_{code}"] = float((new_dssp == code).mean())
    for angle in ("phi", "psi", "chi"):
        out[f"tv_{angle}"] = tv_distance(ref[angle], new[angle])
    for name in INTERACTION_NAMES:
        a, b = ref[name], new[name]
        out[f"{name}_overlap"] = overlap(a, b)
        out[f"{name}_r"] = pearson(a, b)
        out[f"{name}_ratio"] = float(b.sum() / a.sum()) if a.sum() > 0 else float("nan")
    for angle in ("phi", "psi", "chi"):  # baseline: every residue given the pooled histogram of all residues
        hist = ref[angle]
        pooled = np.nanmean(hist, axis=0, keepdims=True)
        out[f"tv_pooled_{angle}"] = tv_distance(hist, np.where(np.isfinite(hist), pooled, np.nan))
    out["rmsf_maxabs_nm"] = float(np.abs(ref["rmsf"] - new["rmsf"]).max())
    out["corr_maxabs"] = float(np.nanmax(np.abs(ref["corr"] - new["corr"])))
    return out


def backmap_frames(engine: str, trace: np.ndarray, beads, folder: Path) -> tuple[md.Trajectory, float]:
    """Heavy-atom frames rebuilt by ``engine`` and the seconds per frame."""
    if engine == "cgback":
        return cgback_frames(trace, beads, folder)
    mapper = Backmapper(beads, engine=engine, source="bench")
    t0 = time.perf_counter()
    frames = mapper.frames(trace)
    dt = (time.perf_counter() - t0) / len(trace)
    return md.Trajectory(frames, mapper.topology), dt


def cgback_frames(trace: np.ndarray, beads, folder: Path) -> tuple[md.Trajectory, float]:
    """CGBack (its command line, model M, seed 42) frame by frame; its output already has hydrogens."""
    exe = shutil.which("cgback")
    if exe is None:
        raise RuntimeError("cgback is not installed")
    frames, top = [], None
    t0 = time.perf_counter()
    for k in range(len(trace)):
        inp, out = folder / f"cg_{k}.pdb", folder / f"cg_{k}_aa.pdb"
        md.Trajectory(trace[k:k + 1], beads.topology).save_pdb(str(inp))
        subprocess.run([exe, str(inp), "-o", str(out)], check=True, capture_output=True)
        traj = md.load(str(out))
        sel = traj.topology.select("protein")
        traj = traj.atom_slice(sel)
        if top is None:
            top = traj.topology
        elif traj.n_atoms != top.n_atoms:
            raise RuntimeError(f"cgback frame {k}: {traj.n_atoms} atoms, first frame had {top.n_atoms}")
        frames.append(traj.xyz[0])
    dt = (time.perf_counter() - t0) / len(trace)
    return md.Trajectory(np.stack(frames), top), dt


def fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def run_backmapping(system: System, n_frames: int, engines: list[str], folder: Path, relax: str = "hydrogens"
                    ) -> list[tuple[str, int, dict, dict]]:
    traj, protein = load_protein(system, n_frames)
    rows = protein.residue_rows
    ref = extract_md(system.topology, system.trajectory, stride=system.stride,
                     stop=system.stride * traj.n_frames, frequency="fraction")
    assert ref["n_frames"] == traj.n_frames
    ref_dssp = dssp_codes(traj, rows)
    trace = calpha_trace(protein, traj.xyz)
    ca_only = traj.atom_slice(traj.topology.select("name CA"))
    beads = bead_topology(ca_only.topology, source=system.name)
    results = []
    for engine in engines:
        heavy, bm_dt = backmap_frames(engine, trace, beads, folder)
        timing = {"backmap_ms": bm_dt * 1000}
        has_h = any(a.element.symbol == "H" for a in heavy.topology.atoms)
        if not has_h:
            t0 = time.perf_counter()
            adder = HydrogenAdder(heavy.topology, heavy.xyz[0], relax=relax, source=engine)
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            allh = md.Trajectory(adder.frames(heavy.xyz), adder.topology)
            timing["hydrogens_ms"] = (time.perf_counter() - t0) / heavy.n_frames * 1000
            timing["hydrogens_setup_s"] = setup
        else:
            allh = heavy
        t0 = time.perf_counter()
        new = features(allh, folder, f"bm_{engine}")
        timing["features_ms"] = (time.perf_counter() - t0) / allh.n_frames * 1000
        new_protein = build_protein_topology(allh.topology)
        new_dssp = dssp_codes(allh.atom_slice(new_protein.atom_indices), new_protein.residue_rows)
        results.append((engine, traj.n_frames, compare(ref, new, ref_dssp, new_dssp), timing))
    return results


def run_reprotonation(system: System, n_frames: int, folder: Path) -> list[tuple[str, dict, float]]:
    traj, _ = load_protein(system, n_frames)
    heavy = traj.atom_slice(traj.topology.select("not element H"))
    out = []
    refs = {f: extract_md(system.topology, system.trajectory, stride=system.stride,
                          stop=system.stride * traj.n_frames, frequency=f) for f in ("reference", "fraction")}
    for forcefield in ("amber14", None):
        try:
            adder = HydrogenAdder(heavy.topology, heavy.xyz[0], forcefield=forcefield, source=system.name)
        except InputError as exc:
            print(f"({forcefield}: {str(exc)[:160]}...)")
            continue
        t0 = time.perf_counter()
        allh = md.Trajectory(adder.frames(heavy.xyz), adder.topology)
        ms = (time.perf_counter() - t0) / heavy.n_frames * 1000
        stats = {}
        for frequency, ref in refs.items():
            new = features(allh, folder, f"h_{forcefield}_{frequency}", frequency=frequency)
            for name in HBONDS:
                a, b = ref[name], new[name]
                stats[(frequency, name)] = (overlap(a, b), pearson(a, b), float(np.abs(a - b).max()),
                                            float(b.sum() / a.sum()) if a.sum() else float("nan"))
        out.append((forcefield or "geometric (no force field)", stats, ms))
    return out


def print_backmapping(name: str, results) -> None:
    print(f"\n#### {name}\n")
    head = ["engine", "frames", "SASA r (mean)", "SASA rel. err", "SASA r (sd)", "DSSP agree", "TV phi",
            "TV psi", "TV chi1", "RMSF max Δ (nm)", "ms/frame back-map", "ms/frame H"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for engine, n, m, t in results:
        print(f"| {engine} | {n} | {fmt(m['sasa_mean_r'], 3)} | {fmt(m['sasa_mean_relerr'], 3)} | "
              f"{fmt(m['sasa_std_r'], 3)} | {fmt(m['dssp_overall'], 3)} | {fmt(m['tv_phi'])} | {fmt(m['tv_psi'])} | "
              f"{fmt(m['tv_chi'])} | {fmt(m['rmsf_maxabs_nm'], 4)} | {fmt(t['backmap_ms'], 0)} | "
              f"{fmt(t.get('hydrogens_ms', float('nan')), 0)} |")
    m0 = results[0][2]
    print(f"\nBaseline TV (every residue given the pooled histogram of all residues, no per-residue information): "
          f"phi {fmt(m0['tv_pooled_phi'])}, psi {fmt(m0['tv_pooled_psi'])}, chi1 {fmt(m0['tv_pooled_chi'])}")
    print("\nDSSP per class: recall (share in original → share back-mapped)\n")
    print("| engine | " + " | ".join(c if c.strip() else "coil" for c in SS_DSSP_CODES) + " |")
    print("|" + "---|" * (len(SS_DSSP_CODES) + 1))
    for engine, _, m, _ in results:
        cells = [f"{fmt(m[f'dssp_recall_{c}'])} ({fmt(m[f'dssp_share_ref_{c}'])}→{fmt(m[f'dssp_share_new_{c}'])})"
                 for c in SS_DSSP_CODES]
        print(f"| {engine} | " + " | ".join(cells) + " |")
    print("\nInteractions (fraction of frames): overlap Σmin/Σmax / Pearson r / Σ back-mapped ÷ Σ original\n")
    print("| engine | " + " | ".join(INTERACTION_NAMES) + " |")
    print("|" + "---|" * (len(INTERACTION_NAMES) + 1))
    for engine, _, m, _ in results:
        cells = [f"{fmt(m[f'{t}_overlap'])} / {fmt(m[f'{t}_r'])} / {fmt(m[f'{t}_ratio'])}" for t in INTERACTION_NAMES]
        print(f"| {engine} | " + " | ".join(cells) + " |")


def print_reprotonation(name: str, n: int, results) -> None:
    print(f"\n#### {name}: {n} frames stripped of hydrogens and re-protonated (pH 7)\n")
    print("| placement | ms/frame | frequency | " + " | ".join(HBONDS) + " |")
    print("|---|---|---|" + "---|" * len(HBONDS))
    for label, stats, ms in results:
        for frequency in ("reference", "fraction"):
            cells = []
            for t in HBONDS:
                ov, r, mx, ratio = stats[(frequency, t)]
                cells.append(f"{fmt(ov)} / {fmt(r, 3)} / {fmt(mx)} / {fmt(ratio)}")
            print(f"| {label} | {fmt(ms, 0)} | {frequency} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="+", default=["2hba", "3tvj", "adk"])
    parser.add_argument("--frames", type=int, default=50, help="frames per system for pulchra (after stride)")
    parser.add_argument("--subset", type=int, default=5, help="frames for the slow engines (pulchra-python, cgback)")
    parser.add_argument("--slow-engines", nargs="*", default=["pulchra-python", "cgback"])
    parser.add_argument("--skip-reprotonation", action="store_true")
    parser.add_argument("--only-reprotonation", action="store_true")
    parser.add_argument("--relax", choices=["hydrogens", "all_but_calpha"], nargs="+", default=["hydrogens"],
                        help="what moves when hydrogens are added to back-mapped frames (several: side by side)")
    args = parser.parse_args(argv)
    available = systems()
    slow = [e for e in args.slow_engines if e != "cgback" or shutil.which("cgback")]
    print(f"seqdance back-mapping fidelity; {os.cpu_count()} CPUs (shared machine: timings are indicative); "
          f"hydrogens added to back-mapped frames with relax={args.relax}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key in args.systems:
            system = available[key]
            print(f"\n### {system.name}", flush=True)
            if args.only_reprotonation:
                n = min(args.frames, 20)
                print_reprotonation(system.name, n, run_reprotonation(system, n, folder))
                continue
            results = []
            for relax in args.relax:
                rows = run_backmapping(system, args.frames, ["pulchra"], folder, relax=relax)
                label = "pulchra" if len(args.relax) == 1 else f"pulchra, relax={relax}"
                results.extend((label, *row[1:]) for row in rows)
            print_backmapping(f"{system.name}: {results[0][1]} frames", results)
            if slow and args.subset:
                sub = run_backmapping(system, args.subset, ["pulchra", *slow], folder, relax=args.relax[0])
                print_backmapping(f"{system.name}: engines side by side on the first {args.subset} frames", sub)
            if not args.skip_reprotonation:
                n = min(args.frames, 20)
                print_reprotonation(system.name, n, run_reprotonation(system, n, folder))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
