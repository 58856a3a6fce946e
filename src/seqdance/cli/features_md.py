"""``seqdance features md``: dynamic features of one MD system (one or more replica trajectories) to an .npz.

The output records the SHA-256 of every input file and the options that shape the values (its ``fingerprint``,
:mod:`seqdance.features.feature_files`); a re-run whose output records the same input contents and options does
nothing, anything else recomputes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seqdance.cli.options import int_at_least
from seqdance.errors import InputError
from seqdance.features.options import (
    BACKMAP_ENGINES,
    BACKMAP_PROPERTY_SETS,
    DEFAULT_HYDROGEN_PH,
    FREQUENCIES,
    HYDROGEN_FORCEFIELDS,
    MISSING_HYDROGENS,
    SASA_ENGINES,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "md",
        help="MD features (SASA, RMSF, DSSP, dihedrals, Cα correlation, nine interaction types) of a trajectory",
        description=(
            "Compute the raw MD features of DESIGN §3 for one system and write them to an .npz file (atomically). "
            "Several --trajectory options (replicas of the same system) pool their frames. Topology: any format "
            "MDTraj reads, GROMACS .tpr, or an mdCATH .h5 file (select temperature/replica with FILE.h5#348/0); a "
            "multi-model PDB/mmCIF ensemble (PED, NMR) may be its own trajectory. A one-bead-per-residue topology "
            "(CALVADOS, HPS, Cα-only) or a Martini model (read by its BB beads) is detected and gives the Cα "
            "properties (RMSF, movement correlation, conformation) with the atom-level ones missing, or, for a "
            "one-bead trace, all of them with --backmap. What an input cannot give is written as NaN and listed in "
            "'missing_properties' (docs/coarse_grained.md)."
        ),
    )
    parser.add_argument("--topology", "-t", required=True, metavar="TOP",
                        help="topology (PDB, PSF, GRO, PRMTOP, TPR, mdCATH .h5, ...)")
    parser.add_argument("--trajectory", "-x", action="append", default=None, metavar="TRAJ",
                        help="trajectory (DCD, XTC, TRR, NetCDF, multi-model PDB, mdCATH .h5[#T[/R]]); repeat for "
                             "replicas; omit to use the topology file's own frames")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.npz", help="output .npz file")
    parser.add_argument("--frequency", choices=FREQUENCIES, default="reference",
                        help="interaction frequency: 'reference' = atom-pair records per frame, asymmetric (as the "
                             "released data); 'fraction' = fraction of frames with a contact, symmetric "
                             "(default: reference)")
    parser.add_argument("--stride", type=int_at_least(1), default=1, help="use every N-th frame (default 1)")
    parser.add_argument("--start", type=int_at_least(0), default=0, help="first frame of each trajectory (0-based, default 0)")
    parser.add_argument("--stop", type=int_at_least(1), default=None, help="frame index to stop before (default: end)")
    parser.add_argument("--chunk-frames", type=int_at_least(1), default=100,
                        help="frames held in memory at once (default 100)")
    parser.add_argument("--missing-hydrogens", choices=MISSING_HYDROGENS, default="error",
                        help="without hydrogens (and without --add-hydrogens): 'error' (default) or 'skip' = H-bond "
                             "maps missing (NaN)")
    parser.add_argument("--add-hydrogens", action="store_true",
                        help="add hydrogens (OpenMM) to an all-atom input that has none (PED conformers, X-ray "
                             "ensembles), so that H-bonds can be computed; an input with hydrogens is used as it is")
    parser.add_argument("--hydrogen-ph", type=float, default=DEFAULT_HYDROGEN_PH, metavar="PH",
                        help=f"pH for the protonation states of added hydrogens (default {DEFAULT_HYDROGEN_PH:g})")
    parser.add_argument("--hydrogen-forcefield", choices=HYDROGEN_FORCEFIELDS, default="amber14",
                        help="force field placing added hydrogens: amber14 (default, ff14SB) or none (geometric, any "
                             "residue; loses many side-chain H-bonds)")
    parser.add_argument("--backmap", choices=BACKMAP_ENGINES, default=None,
                        help="rebuild all-atom frames from a one-bead-per-residue trace with PULCHRA (C++ 'pulchra' or "
                             "the pure-Python port 'pulchra-python'), add hydrogens and relax; RMSF and correlation "
                             "still come from the trace")
    parser.add_argument("--backmap-properties", choices=BACKMAP_PROPERTY_SETS, default="reproduced",
                        help="with --backmap: 'reproduced' (default) keeps the properties back-mapping reproduces "
                             "(SASA, DSSP, vdW, backbone H-bonds) and leaves the others missing; 'all' computes every "
                             "property from the rebuilt frames, as the reference did")
    parser.add_argument("--sasa", choices=SASA_ENGINES, default="auto",
                        help="SASA implementation (same numbers): 'auto' (default) = compiled kernel on CPU, torch on "
                             "a GPU --device; 'mdtraj' = MDTraj's shrake_rupley one frame per call (previous path)")
    parser.add_argument("--device", default="auto",
                        help="device for the SASA: auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int_at_least(1), default=None,
                        help="CPU threads computing SASA frames in parallel (default: all cores)")
    parser.add_argument("--csv", action="store_true",
                        help="also write the per-residue table OUT.csv beside OUT.npz (SASA, RMSF, DSSP fractions)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute even when OUT.npz is up to date (same input contents and options)")
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bar and no messages from trajectory readers")
    parser.set_defaults(func=run)


def md_options(args: argparse.Namespace) -> dict:
    """The options that change the computed values (what the output's fingerprint records)."""
    return {"frequency": args.frequency, "stride": args.stride, "start": args.start, "stop": args.stop,
            "missing_hydrogens": args.missing_hydrogens, "add_hydrogens": args.add_hydrogens,
            "hydrogen_ph": args.hydrogen_ph, "hydrogen_forcefield": args.hydrogen_forcefield,
            "backmap": args.backmap, "backmap_properties": args.backmap_properties}


def run(args: argparse.Namespace) -> int:
    from seqdance.features.feature_files import (
        feature_fingerprint,
        is_up_to_date,
        load_feature_file,
        save_md_features,
        write_residue_csv,
    )
    from seqdance.features.md import extract_md

    output = Path(args.output)
    if output.suffix != ".npz":
        raise InputError(f"output must be an .npz file, got {output}")
    table = output.with_suffix(".csv")
    inputs = [("topology", args.topology)] + [("trajectory", t) for t in (args.trajectory or [])]
    fingerprint = feature_fingerprint("md", inputs, md_options(args))
    if not args.overwrite and is_up_to_date(output, fingerprint):
        if args.csv and not table.exists():
            write_residue_csv(table, load_feature_file(output)[1])
        print(f"{output} is up to date (same input contents and options); skipped (--overwrite recomputes)")
        return 0
    began = time.perf_counter()
    features = extract_md(
        args.topology,
        args.trajectory,
        frequency=args.frequency,
        stride=args.stride,
        start=args.start,
        stop=args.stop,
        chunk_frames=args.chunk_frames,
        progress=not args.quiet,
        missing_hydrogens=args.missing_hydrogens,
        sasa=args.sasa,
        device=args.device,
        threads=args.threads,
        backmap=args.backmap,
        backmap_properties=args.backmap_properties,
        add_hydrogens=args.add_hydrogens,
        hydrogen_ph=args.hydrogen_ph,
        hydrogen_forcefield=args.hydrogen_forcefield,
    )
    extra = {
        "source_topology": str(args.topology),
        "source_trajectories": [str(t) for t in (args.trajectory or [])],
        "frames": [args.start, -1 if args.stop is None else args.stop, args.stride],
    }
    save_md_features(output, features, fingerprint=fingerprint, extra=extra)
    if args.csv:
        write_residue_csv(table, features)
    else:
        table.unlink(missing_ok=True)  # a table of the previous values would now disagree with OUT.npz
    rg = ", ".join(f"{v:.2f}" for v in features["conformation_rg_mean"])
    missing = features["missing_properties"]
    print(f"wrote {output}" + (f" and {table.name}" if args.csv else "") + f": {len(features['residue_ids'])} "
          f"residues, {features['n_frames']} frames, {features['frequency']} frequencies, mean Rg {rg} nm, "
          f"{features['input_kind']} input" + (f" (missing: {', '.join(missing)})" if missing else "")
          + f" ({time.perf_counter() - began:.1f} s)")
    return 0
