"""``seqdance dataset build|merge|check`` (and, from their own modules, ``split``, ``homology``, ``labels``): the
dynamics dataset store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import STORE, add_option_arguments, add_output_file, add_quiet_option, int_at_least
from seqdance.features.options import MdOptions
from seqdance.wording import counted


def _compression(text: str) -> str | None:
    if text not in ("auto", "gzip", "lzf", "none"):
        raise argparse.ArgumentTypeError("compression must be auto, gzip, lzf or none")
    return None if text == "none" else text


def _cmd_build(args: argparse.Namespace) -> int:
    from seqdance.cli.main import BUG_EXIT_CODE, BUG_NOTE
    from seqdance.store.builder import build_store, failures_path
    from seqdance.store.manifest import parse_shard

    report = build_store(
        args.manifest, args.output, workers=args.workers, shard=parse_shard(args.shard) if args.shard else None,
        scheduler=args.scheduler, md_options=MdOptions.from_args(args), max_residues=args.max_residues,
        compression=args.compression, threads_per_worker=args.threads_per_worker, fold_every=args.fold_every,
        progress=not args.quiet, overwrite=args.overwrite,
    )
    print(report.summary())
    if report.failed:
        print(f"{counted(report.failed, 'failure')} listed in {failures_path(Path(args.output))}", file=sys.stderr)
        for failure in report.failures[:10]:
            print(f"  {failure['name']}: {failure['error']}", file=sys.stderr)
    if report.bugs:  # the workers' tracebacks are in the log above
        print(f"seqdance dataset build: {counted(report.bugs, 'protein')} failed by an unexpected error; {BUG_NOTE}",
              file=sys.stderr)
        return BUG_EXIT_CODE
    return 1 if (args.strict and report.failed) else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from seqdance.store.merge import merge_stores

    n = merge_stores(args.stores, args.output, compression=args.compression, progress=not args.quiet,
                     overwrite=args.overwrite)
    print(f"{args.output}: {counted(n, 'protein')} from {counted(len(args.stores), 'store')}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from seqdance.store.check import check_store

    report = check_store(args.store, names=args.names or None, index=args.index, progress=not args.quiet)
    for problem in report.problems[: args.max_report]:
        print(problem)
    if len(report.problems) > args.max_report:
        print(f"... and {counted(len(report.problems) - args.max_report, 'more problem')}")
    print(report.summary())
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="build, merge, split and check dynamics dataset stores")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    p = sub.add_parser("build", help="compute targets for a manifest of trajectories/structures into a store",
                       description="Build (or resume) a store from a manifest CSV; see docs/dataset.md.")
    p.add_argument("manifest", help="CSV: name, source, structure | topology + trajectory (';'-separated)")
    add_output_file(p, "hdf5", "store file (HDF5) to create or extend")
    p.add_argument("--workers", type=int_at_least(0), default=1, metavar="N",
                   help="local worker processes (0 = in this process; default 1)")
    p.add_argument("--shard", metavar="i/N",
                   help="build only shard i of N (0-based) into its own store; combine with merge")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask.distributed scheduler address or scheduler file (instead of --workers)")
    add_option_arguments(p, MdOptions, ("frequency", "missing_hydrogens"))  # every MD row's; columns set the rest
    p.add_argument("--max-residues", type=int_at_least(1), metavar="N",
                   help="skip (as failures) proteins longer than N residues")
    p.add_argument("--compression", type=_compression, default="auto", metavar="auto|gzip|lzf|none",
                   help="auto (default: gzip level 1 where it saves ≥25%%), gzip, lzf or none")
    p.add_argument("--threads-per-worker", type=int_at_least(1), metavar="N",
                   help="BLAS/OpenMP threads per worker (default cores/workers)")
    p.add_argument("--fold-every", type=int_at_least(0), default=0, metavar="N",
                   help="fold the journal into the store every N computed proteins (default: only at the end)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any protein failed")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute every protein, even those the store holds for the same inputs and options")
    add_quiet_option(p)
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("merge", help="combine stores (e.g. shards) into one")
    p.add_argument("stores", nargs="+", metavar=STORE, help="input stores")
    add_output_file(p, "hdf5", "merged store (new file)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it already exists")
    p.add_argument("--compression", type=_compression, default="auto", metavar="auto|gzip|lzf|none",
                   help="auto (default: gzip level 1 where it saves ≥25%%), gzip, lzf or none")
    add_quiet_option(p)
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("check", help="validate a store (shapes, value ranges, masks, NaN/inf)")
    p.add_argument("store", metavar=STORE)
    p.add_argument("--index", metavar="CSV", help="index CSV for a released-layout file (default: STORE.csv beside it)")
    p.add_argument("--names", nargs="*", metavar="NAME", help="check only these proteins")
    p.add_argument("--max-report", type=int_at_least(0), default=200, metavar="N", help="print at most N problems")
    add_quiet_option(p)
    p.set_defaults(func=_cmd_check)

    from seqdance.cli import dataset_labels, dataset_split

    dataset_split.register(sub)
    dataset_labels.register(sub)


def main(argv: list[str] | None = None) -> int:
    """Run the dataset commands alone (``python -m seqdance.cli.dataset build ...``)."""
    parser = argparse.ArgumentParser(prog="seqdance")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dataset", *(sys.argv[1:] if argv is None else argv)])
    from seqdance.cli.main import run_command

    return run_command(args.func, args, "seqdance dataset")


if __name__ == "__main__":
    sys.exit(main())
