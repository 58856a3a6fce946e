"""``seqdance probe``: linear probes of labels (e.g. conformational properties) from pooled embeddings
(docs/design.md#embedding-probes).

The embeddings come from :mod:`seqdance.inference.embeddings`, the path ``embed`` uses too (windows beyond 1,022
residues, batching, pooling), cached in the embedding-file layout of ``embed``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from seqdance.cli.options import (
    add_device_option,
    add_dtype_option,
    add_output_dir,
    add_quiet_option,
    fraction,
    int_at_least,
)
from seqdance.errors import InputError
from seqdance.model.kinds import MODEL_SELECTS
from seqdance.wording import counted


def default_cache_dir() -> Path:
    """$SEQDANCE_CACHE/embeddings, else ~/.cache/seqdance/embeddings."""
    root = os.environ.get("SEQDANCE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "seqdance") / "embeddings"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="how well each model's pooled embeddings predict labels (linear/ridge probes beside baselines)",
        description=(
            "LABELS.csv: name, sequence (chains joined by ':'), numeric label columns and optional split_* columns "
            "(train/test). For each model: mean-pooled last-layer embeddings (cached by model and sequence), "
            "optional PCA fitted on the training proteins, linear regression and ridge (cross-validated penalty); "
            "per split MSE, MAE, Pearson, Spearman, summarised mean +- sd, always beside two baselines (sequence "
            "length; amino-acid composition). Without split_* columns, splits are made by clustering the sequences "
            "(20%% identity, 50%% coverage, as the reference notebook). Writes DIR/per_split.csv, summary.csv, "
            "summary.md, predictions.csv, scatter.png, bars.png."
        ),
    )
    parser.add_argument("--labels", required=True, type=Path, metavar="LABELS.csv", help="label table")
    parser.add_argument("--model", required=True, action="append", metavar="[NAME=]SOURCE",
                        help="a model (repeat for several): SeqDance/ESMDance source or a plain ESM2 (facebook/esm2_* "
                             "id, preset such as 35M, or local folder); NAME= sets its name in the outputs")
    parser.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                        help="model kind of training checkpoints that do not record it")
    parser.add_argument("--label", action="append", metavar="COLUMN", help="label column(s) to probe (default: all)")
    parser.add_argument("--pooling", choices=("all", "residues"), default="all",
                        help="mean over all tokens incl. <cls>/<eos> (the notebook's, default; beyond 1,022 residues "
                        "over the windows' tokens, see docs/what_the_model_learned.md) or residues only (embed's "
                        "/mean)")
    parser.add_argument("--pca", type=int_at_least(0), default=200, metavar="K",
                        help="PCA components fitted on the training proteins (default 200, the notebook's; capped "
                             "at n_train - 1 and the embedding size; 0 = none)")
    parser.add_argument("--estimator", nargs="+", choices=("linear", "ridge"), default=["linear", "ridge"],
                        help="regressions to fit (default: both)")
    parser.add_argument("--splits", type=int, default=20, metavar="N",
                        help="clustered splits when the table has no split_* columns (default 20)")
    parser.add_argument("--identity", type=fraction, default=0.2, metavar="F", help="clustering identity (default 0.2)")
    parser.add_argument("--coverage", type=fraction, default=0.5, metavar="F", help="clustering coverage (default 0.5)")
    parser.add_argument("--test-fraction", type=fraction, default=0.2, metavar="F",
                        help="fraction of clusters in test (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the first clustered split (default 0)")
    parser.add_argument("--cluster-method", choices=("python", "mmseqs", "auto"), default="python",
                        help="clustering back-end of the splits: python (default: exhaustive search, the same splits "
                        "on every machine), mmseqs (MMseqs2, for large tables), auto (mmseqs when installed)")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help=f"embedding cache: one embedding file per model, <fingerprint>.h5 (default "
                        f"{default_cache_dir()}, or $SEQDANCE_CACHE/embeddings; delete the folder to clear it)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    add_device_option(parser)
    add_dtype_option(parser)
    add_output_dir(parser, "output folder")
    add_quiet_option(parser)
    parser.set_defaults(func=run_probe)


def _model_specs(values: list[str]) -> list[tuple[str, str]]:
    """(name, source) pairs from ``[NAME=]SOURCE`` options; names must be distinct."""
    specs = []
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or "/" in name or os.path.exists(value):
            name, source = Path(value.rstrip("/")).name or value, value
        specs.append((name, source))
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise InputError(f"two --model options have the same name ({', '.join(names)}); name them with NAME=SOURCE")
    return specs


def run_probe(args: argparse.Namespace) -> int:
    from seqdance.analysis.models import load_analysis_model
    from seqdance.analysis.probe_run import probe_models, read_label_table, write_probe_report
    from seqdance.devices import model_dtype, resolve_device

    began = time.perf_counter()
    table = read_label_table(args.labels, args.label)  # every label-file problem before any model is loaded
    device = resolve_device(args.device, default="auto")
    from seqdance.model.hints import model_option

    with model_option("--model", "--model-select"):
        models = [(name, load_analysis_model(source, model_select=args.model_select, device=device,
                                             dtype=model_dtype(args.dtype)))
                  for name, source in _model_specs(args.model)]
    cache = None if args.no_cache else (args.cache or default_cache_dir())
    result = probe_models(
        models, table, pooling=args.pooling, pca=args.pca or None, estimators=args.estimator,
        n_splits=args.splits, identity=args.identity, coverage=args.coverage, test_fraction=args.test_fraction,
        seed=args.seed, cluster_method=args.cluster_method, cache_dir=cache, progress=not args.quiet,
    )
    paths = write_probe_report(result, args.output)
    print(paths["markdown"].read_text())
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if cache is not None:
        print(f"embeddings are cached in {cache} (one file per model; delete the folder to clear it, --no-cache to "
              "neither read nor write it)", file=sys.stderr)
    computed = int(result.embedding_stats["computed"].sum())
    print(f"{counted(len(table.names), 'protein')}, {counted(len(table.labels), 'label')}, "
          f"{counted(len(models), 'model')}; {counted(computed, 'embedding')} "
          f"computed, {int(result.embedding_stats['cached'].sum())} from the cache "
          f"({time.perf_counter() - began:.1f} s); wrote {counted(len(paths), 'file')} to {args.output}",
          file=sys.stderr)
    return 0
