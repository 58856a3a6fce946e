"""``seqdance features md``: dynamic features of one MD system (one or more replica trajectories) to an .npz.

The flags of the options come from :class:`seqdance.features.options.MdOptions`; the work is
:func:`seqdance.features.feature_files.compute_md_file` (which skips an output whose fingerprint records the same
input contents and options).
"""

from __future__ import annotations

import argparse

from seqdance.cli.options import add_option_arguments, add_output_file, add_quiet_option
from seqdance.features.options import MdOptions
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "md",
        help="MD features (SASA, RMSF, DSSP, dihedrals, Cα correlation, nine interaction types) of a trajectory",
        description=(
            "Compute the raw MD features of docs/design.md#md-features for one system and write them to an .npz file "
            "(atomically). "
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
    add_output_file(parser, "npz", "output .npz file")
    add_option_arguments(parser, MdOptions)
    parser.add_argument("--csv", action="store_true",
                        help="also write the per-residue table OUT.csv beside OUT.npz (SASA, RMSF, DSSP fractions)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute even when OUT.npz is up to date (same input contents and options)")
    add_quiet_option(parser, deprecated=("--no-progress",))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqdance.features.feature_files import compute_md_file

    result = compute_md_file(args.output, args.topology, args.trajectory, MdOptions.from_args(args), csv=args.csv,
                             overwrite=args.overwrite, progress=not args.quiet)
    features = result.features
    if features is None:
        print(f"{result.output} is up to date (same input contents and options); skipped (--overwrite recomputes)")
        return 0
    rg = ", ".join(f"{v:.2f}" for v in features["conformation_rg_mean"])
    missing = features["missing_properties"]
    print(f"wrote {result.output}" + (f" and {result.table.name}" if result.table else "") + f": "
          f"{counted(len(features['residue_ids']), 'residue')}, {counted(int(features['n_frames']), 'frame')}, "
          f"{features['frequency']} "
          f"frequencies, mean Rg {rg} nm, {features['input_kind']} input"
          + (f" (missing: {', '.join(missing)})" if missing else "") + f" ({result.seconds:.1f} s)")
    return 0
