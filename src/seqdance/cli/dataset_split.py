"""``seqdance dataset split|homology``: sequence-identity clusters, train/test labels, homologs of queries."""

from __future__ import annotations

import argparse
import json

from seqdance.cli.options import STORE, add_output_file, add_quiet_option, fraction, int_at_least, output_file
from seqdance.store.options import (
    CLUSTER_METHODS,
    DEFAULT_CLUSTER_METHOD,
    DEFAULT_COVERAGE,
    DEFAULT_IDENTITY,
    DEFAULT_MIN_TEST_CLUSTERS,
    DEFAULT_TEST_FRACTION,
)
from seqdance.wording import counted


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
    print(f"queries with a homolog: {n_hom:,} of {len(hits):,}, among {counted(len(index), 'protein')} "
          f"labelled '{args.label}' "
          f"(identity ≥ {args.identity}, coverage ≥ {args.coverage}; {hits.attrs.get('method')})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="cluster by sequence identity and label proteins train/test by cluster")
    p.add_argument("store", metavar=STORE)
    p.add_argument("--identity", type=fraction, default=DEFAULT_IDENTITY, metavar="F",
                   help="minimum identity (default 0.5)")
    p.add_argument("--coverage", type=fraction, default=DEFAULT_COVERAGE, metavar="F",
                   help="minimum alignment coverage of both sequences (default 0.8)")
    p.add_argument("--test-fraction", type=fraction, default=DEFAULT_TEST_FRACTION, metavar="F",
                   help="fraction of clusters in test (default 0.05)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the cluster shuffle (default 0)")
    p.add_argument("--stratify", choices=("group", "none"), default="group",
                   help="'group' (default): split each source group's clusters on their own, so every group "
                   "with 2+ clusters gets test proteins; 'none': one draw over all clusters (the reference's)")
    p.add_argument("--min-test-clusters", type=int, default=DEFAULT_MIN_TEST_CLUSTERS, metavar="N",
                   help="test clusters each group gets at least, when it has more (default "
                   f"{DEFAULT_MIN_TEST_CLUSTERS}; one always stays in training)")
    p.add_argument("--method", choices=CLUSTER_METHODS, default=DEFAULT_CLUSTER_METHOD,
                   help="clustering back-end: python (default: exhaustive search, the same split on every machine), "
                   "mmseqs (MMseqs2, for large sets), auto (mmseqs when installed, else python: machine-dependent)")
    p.add_argument("--threads", type=int_at_least(1), default=1, metavar="N", help="MMseqs2 threads")
    p.add_argument("--clusters", type=output_file("tsv"), metavar="OUT.tsv",
                   help="write name, cluster, label, group as TSV here")
    p.add_argument("--stats", type=output_file("json"), metavar="OUT.json",
                   help="write the split statistics as JSON here")
    add_quiet_option(p)
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("homology", help="which query sequences have homologs in a store's training split")
    p.add_argument("queries", metavar="FASTA", help="FASTA file of query sequences")
    p.add_argument("--store", required=True, metavar=STORE, help="store whose proteins are the targets")
    p.add_argument("--index", metavar="CSV", help="index CSV for a released-layout file")
    p.add_argument("--label", default="train", metavar="LABEL",
                   help="compare against proteins with this label, or 'all'")
    p.add_argument("--identity", type=fraction, default=DEFAULT_IDENTITY, metavar="F",
                   help=f"minimum identity (default {DEFAULT_IDENTITY})")
    p.add_argument("--coverage", type=fraction, default=DEFAULT_COVERAGE, metavar="F",
                   help=f"minimum alignment coverage of both sequences (default {DEFAULT_COVERAGE})")
    p.add_argument("--method", choices=CLUSTER_METHODS, default=DEFAULT_CLUSTER_METHOD,
                   help="search back-end: python (default), mmseqs or auto, as for 'dataset split'")
    p.add_argument("--threads", type=int_at_least(1), default=1, metavar="N", help="MMseqs2 threads")
    add_output_file(p, "csv", "write the per-query table (CSV) here", required=False)
    add_quiet_option(p)
    p.set_defaults(func=_cmd_homology)

