"""``seqdance dataset build|merge|split|check|homology|labels``: the dynamics dataset store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqdance.cli.options import fraction, int_at_least
from seqdance.features.options import FREQUENCIES, MISSING_HYDROGENS
from seqdance.store.options import (
    CLUSTER_METHODS,
    DEFAULT_COVERAGE,
    DEFAULT_IDENTITY,
    DEFAULT_MIN_TEST_CLUSTERS,
    DEFAULT_TEST_FRACTION,
)


def _compression(text: str) -> str | None:
    if text not in ("auto", "gzip", "lzf", "none"):
        raise argparse.ArgumentTypeError("compression must be auto, gzip, lzf or none")
    return None if text == "none" else text


def _cmd_build(args: argparse.Namespace) -> int:
    from seqdance.store.builder import build_store, failures_path
    from seqdance.store.manifest import parse_shard

    report = build_store(
        args.manifest, args.output, workers=args.workers, shard=parse_shard(args.shard) if args.shard else None,
        scheduler=args.scheduler, frequency=args.frequency, max_residues=args.max_residues,
        missing_hydrogens=args.missing_hydrogens, compression=args.compression,
        threads_per_worker=args.threads_per_worker, fold_every=args.fold_every, progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(report.summary())
    if report.failed:
        print(f"{report.failed} failure(s) listed in {failures_path(Path(args.output))}", file=sys.stderr)
        for failure in report.failures[:10]:
            print(f"  {failure['name']}: {failure['error']}", file=sys.stderr)
    return 1 if (args.strict and report.failed) else 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from seqdance.store.merge import merge_stores

    n = merge_stores(args.stores, args.output, compression=args.compression, progress=not args.quiet,
                     overwrite=args.overwrite)
    print(f"{args.output}: {n} proteins from {len(args.stores)} store(s)")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from seqdance.store.split import split_store, split_table

    result = split_store(
        args.store, identity=args.identity, coverage=args.coverage, test_fraction=args.test_fraction,
        seed=args.seed, method=args.method, threads=args.threads, clusters_out=args.clusters,
        stratify=args.stratify == "group", min_test_clusters=args.min_test_clusters,
    )
    if args.stats:
        from seqdance.io_utils import atomic_path

        with atomic_path(args.stats) as tmp:
            tmp.write_text(json.dumps(result.stats, indent=2, sort_keys=True) + "\n")
    print(split_table(result.stats))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from seqdance.store.check import check_store

    report = check_store(args.store, names=args.names or None, index=args.index, progress=not args.quiet)
    for problem in report.problems[: args.max_report]:
        print(problem)
    if len(report.problems) > args.max_report:
        print(f"... and {len(report.problems) - args.max_report} more problem(s)")
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_homology(args: argparse.Namespace) -> int:
    from seqdance.io_utils import atomic_path, read_fasta
    from seqdance.store.hdf5 import DynamicsStore, from_modify_seq
    from seqdance.store.split import homology_hits

    queries = read_fasta(args.queries)
    with DynamicsStore.open(args.store, index=args.index) as store:
        index = store.index
    if args.label != "all":
        index = index[index["label"] == args.label]
    hits = homology_hits(
        [q.id for q in queries], [q.sequence for q in queries],
        list(index["name"]), [from_modify_seq(s) for s in index["modify_seq"]],
        identity=args.identity, coverage=args.coverage, method=args.method, threads=args.threads,
    )
    if args.output:
        with atomic_path(args.output) as tmp:
            hits.to_csv(tmp, index=False)
    n_hom = int(hits["has_homolog"].sum())
    for row in hits[hits["has_homolog"]].itertuples():
        print(f"{row.query}\t{row.target}\tidentity={row.identity:.3f}\tcoverage={row.query_coverage:.2f}/"
              f"{row.target_coverage:.2f}")
    print(f"{n_hom} of {len(hits)} queries have a homolog among {len(index)} '{args.label}' proteins "
          f"(identity ≥ {args.identity}, coverage ≥ {args.coverage}; {hits.attrs.get('method')})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="build, merge, split and check dynamics dataset stores")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    p = sub.add_parser("build", help="compute targets for a manifest of trajectories/structures into a store",
                       description="Build (or resume) a store from a manifest CSV; see docs/dataset.md.")
    p.add_argument("manifest", help="CSV: name, source, structure | topology + trajectory (';'-separated)")
    p.add_argument("-o", "--output", required=True, help="store file (HDF5) to create or extend")
    p.add_argument("--workers", type=int_at_least(0), default=1, help="local worker processes (0 = in this process; default 1)")
    p.add_argument("--shard", help="i/N: build only shard i of N (0-based) into its own store; combine with merge")
    p.add_argument("--scheduler", help="dask.distributed scheduler address or scheduler file (instead of --workers)")
    p.add_argument("--frequency", choices=FREQUENCIES, default="reference",
                   help="MD interaction frequency mode (default reference, as the released data)")
    p.add_argument("--max-residues", type=int_at_least(1), help="skip (as failures) proteins longer than this")
    p.add_argument("--missing-hydrogens", choices=MISSING_HYDROGENS, default="error",
                   help="MD without hydrogens: fail (default) or store masked H-bond maps")
    p.add_argument("--compression", type=_compression, default="auto",
                   help="auto (default: gzip level 1 where it saves ≥25%%), gzip, lzf or none")
    p.add_argument("--threads-per-worker", type=int_at_least(1), help="BLAS/OpenMP threads per worker (default cores/workers)")
    p.add_argument("--fold-every", type=int_at_least(0), default=0,
                   help="fold the journal into the store every N computed proteins (default: only at the end)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any protein failed")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute every protein, even those the store holds for the same inputs and options")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("merge", help="combine stores (e.g. shards) into one")
    p.add_argument("stores", nargs="+", help="input stores")
    p.add_argument("-o", "--output", required=True, help="merged store (new file)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it already exists")
    p.add_argument("--compression", type=_compression, default="auto",
                   help="auto (default: gzip level 1 where it saves ≥25%%), gzip, lzf or none")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("split", help="cluster by sequence identity and label proteins train/test by cluster")
    p.add_argument("store")
    p.add_argument("--identity", type=fraction, default=DEFAULT_IDENTITY, help="minimum identity (default 0.5)")
    p.add_argument("--coverage", type=fraction, default=DEFAULT_COVERAGE,
                   help="minimum alignment coverage of both sequences (default 0.8)")
    p.add_argument("--test-fraction", type=fraction, default=DEFAULT_TEST_FRACTION,
                   help="fraction of clusters in test (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cluster shuffle (default 0)")
    p.add_argument("--stratify", choices=("group", "none"), default="group",
                   help="'group' (default): split each source group's clusters on their own, so every group "
                   "with 2+ clusters gets test proteins; 'none': one draw over all clusters (the reference's)")
    p.add_argument("--min-test-clusters", type=int, default=DEFAULT_MIN_TEST_CLUSTERS, metavar="N",
                   help="test clusters each group gets at least, when it has more (default "
                   f"{DEFAULT_MIN_TEST_CLUSTERS}; one always stays in training)")
    p.add_argument("--method", choices=CLUSTER_METHODS, default="auto",
                   help="clustering back-end (auto: MMseqs2 when installed)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="MMseqs2 threads")
    p.add_argument("--clusters", help="write name, cluster, label, group as TSV here")
    p.add_argument("--stats", help="write the split statistics as JSON here")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("check", help="validate a store (shapes, value ranges, masks, NaN/inf)")
    p.add_argument("store")
    p.add_argument("--index", help="index CSV for a released-layout file (default: STORE.csv beside it)")
    p.add_argument("--names", nargs="*", help="check only these proteins")
    p.add_argument("--max-report", type=int_at_least(0), default=200, help="print at most this many problems")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("homology", help="which query sequences have homologs in a store's training split")
    p.add_argument("queries", help="FASTA file of query sequences")
    p.add_argument("--store", required=True, help="store whose proteins are the targets")
    p.add_argument("--index", help="index CSV for a released-layout file")
    p.add_argument("--label", default="train", help="compare against proteins with this label, or 'all'")
    p.add_argument("--identity", type=fraction, default=DEFAULT_IDENTITY)
    p.add_argument("--coverage", type=fraction, default=DEFAULT_COVERAGE)
    p.add_argument("--method", choices=CLUSTER_METHODS, default="auto")
    p.add_argument("--threads", type=int_at_least(1), default=1)
    p.add_argument("-o", "--output", help="write the per-query table (CSV) here")
    p.set_defaults(func=_cmd_homology)

    from seqdance.cli import dataset_labels

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
