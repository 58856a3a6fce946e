"""``seqdance features nma``: normal-mode features of many structures, in parallel worker processes.

The flags of the options come from :class:`seqdance.features.options.NmaOptions`; the work is
:func:`seqdance.features.nma.batch.run_nma_batch` (resumable by content; failures listed per structure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_option_arguments, add_quiet_option, deprecated_alias, int_at_least
from seqdance.features.options import NmaOptions
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nma",
        help="normal-mode features (GNM fluctuations, ANM correlations) from PDB/mmCIF structures",
        description=(
            "Compute nma_res1..3 (GNM fluctuations) and nma_pair1..3 (ANM correlations) in the low / mid / high "
            "frequency ranges for each structure (docs/features_nma.md). Writes OUTDIR/<stem>.npz per structure; "
            "existing complete outputs are skipped (resumable)."
        ),
    )
    parser.add_argument(
        "structures", nargs="+", metavar="STRUCTURE",
        help="PDB/mmCIF files (plain or .gz), or directories whose structure files are all processed",
    )
    output = parser.add_mutually_exclusive_group(required=True)  # required: --output or its old name
    output.add_argument("-o", "--output", type=Path, metavar="OUTDIR",
                        help="output folder (one OUTDIR/<stem>.npz per structure)")
    deprecated_alias(output, "--out-dir", "--output", "output", type=Path, metavar="OUTDIR")
    add_option_arguments(parser, NmaOptions)
    parser.add_argument(
        "--workers", type=int_at_least(1), default=None, metavar="N",
        help="parallel worker processes (default: number of CPUs; 1 runs in this process)",
    )
    parser.add_argument("--compress", action="store_true", help="zip-compress the .npz outputs")
    parser.add_argument("--csv", action="store_true",
                        help="also write OUTDIR/<stem>.csv per structure (nma_res1..3 per residue)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute structures whose output is up to date (same file contents and options)")
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqdance.cli.main import BUG_EXIT_CODE, BUG_NOTE
    from seqdance.features.nma.batch import run_nma_batch

    report = run_nma_batch(args.structures, args.output, NmaOptions.from_args(args), workers=args.workers,
                           compress=args.compress, csv=args.csv, overwrite=args.overwrite,
                           progress=not args.quiet)
    for failure in report.failures:
        text = failure.message if failure.message.startswith(failure.structure) else (
            f"{failure.structure}: {failure.message}")
        print(f"FAILED {text}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    if report.bugs:  # the workers' tracebacks are in the log above
        print(f"seqdance features nma: {counted(len(report.bugs), 'structure')} failed by an unexpected error; "
              f"{BUG_NOTE}", file=sys.stderr)
        return BUG_EXIT_CODE
    return 1 if report.failures else 0
