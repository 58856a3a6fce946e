"""``seqdance report``: an interactive HTML page of a run's outputs; and the ``--report`` option of the commands
that write runs (predict, score)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_file, add_quiet_option, int_at_least, output_file

REPORT_HELP = ("also write an interactive HTML report of the run (default: OUTDIR/report.html, or OUT.html beside "
               "a single table); open it in a browser, no network needed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="an interactive HTML page of a run's outputs (predict or score), readable from disk",
        description="Reads the files of a 'seqdance predict' folder (<id>.npz, residues.csv) or a 'seqdance score' "
        "output (a folder with scores.csv, or one table) and writes one self-contained HTML file: a searchable, "
        "sortable table of proteins; per protein residue profiles with hover, zoomable pair maps and the "
        "saturation heat map of mutation scores. Needs plotly (pip install 'seqdance[plots]').",
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="a predict output folder, a score output folder, "
                        "or a score table (.csv)")
    add_output_file(parser, "html", "the page to write (default: RUN/report.html, or RUN's name with .html)",
                    required=False, default=None)
    parser.add_argument("--max-proteins", type=int_at_least(1), default=None, metavar="N",
                        help="panels for the first N proteins (default 100; the table lists every protein)")
    parser.add_argument("--ids", nargs="+", metavar="ID", help="panels for these proteins instead")
    parser.add_argument("--pair-display-max", type=int_at_least(16), default=None, metavar="N",
                        help="pair maps longer than N residues are shown averaged over blocks (default 400)")
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqdance.report.page import command_line, write_report
    from seqdance.report.views import ReportOptions

    defaults = ReportOptions()
    options = ReportOptions(
        max_proteins=args.max_proteins or defaults.max_proteins,
        ids=tuple(args.ids) if args.ids else None,
        pair_display_max=args.pair_display_max or defaults.pair_display_max,
    )
    target = args.output or (args.run / "report.html" if args.run.is_dir() else args.run.with_suffix(".html"))
    path = write_report(args.run, target, options=options, command=command_line(getattr(args, "command_argv", None)),
                        progress=not args.quiet)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def add_report_option(parser: argparse.ArgumentParser) -> None:
    """``--report [OUT.html]`` on a command that writes a run."""
    parser.add_argument("--report", nargs="?", const="", default=None, metavar="OUT.html", type=output_file("html"),
                        help=REPORT_HELP)


def write_run_report(args: argparse.Namespace, run_path: Path, *, complete: bool = True, model=None) -> None:
    """After a run: its report when ``--report`` was given (``model``: the loaded model, whose name and fingerprint
    the page shows when the run's files do not record them). A shard whose run is not complete yet writes none."""
    if getattr(args, "report", None) is None:
        return
    if not complete:
        print("--report: the run is not complete yet (other shards are running); the last shard writes the report, "
              f"or run: seqdance report {run_path}", file=sys.stderr)
        return
    from seqdance.report.page import command_line, report_for_run

    fingerprint = None
    if model is not None:
        from seqdance.inference.fingerprint import module_fingerprint

        fingerprint = module_fingerprint(model)
    report_for_run(run_path, args.report or None, model=getattr(args, "model", None), model_fingerprint=fingerprint,
                   quiet=bool(getattr(args, "quiet", False)), command=command_line(getattr(args, "command_argv", None)))
