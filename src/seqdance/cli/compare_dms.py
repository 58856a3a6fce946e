"""``seqdance compare-dms``: the paper's comparison of zero-shot predictors on ProteinGym assays in one command
(:mod:`seqdance.scoring.dms_compare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_dir, add_quiet_option, fraction
from seqdance.store.options import DEFAULT_COVERAGE
from seqdance.wording import counted

METRICS = ("Spearman", "AUC", "MCC", "NDCG", "Top_recall")  # ProteinGym's (seqdance.scoring.proteingym_performance)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare-dms",
        help="paired comparison of score columns on ProteinGym assays (Wilcoxon per category, figure)",
        description="Per-assay ProteinGym metric of two or more models (columns of the score files, other models' "
        "score folders merged by mutant, combinations), their paired differences to a baseline, a Wilcoxon "
        "signed-rank p-value over all assays and per taxon, selection type, MSA depth and user groups, and a figure "
        "of the per-category means with standard errors.",
    )
    p.add_argument("--scores", required=True, type=Path, metavar="DIR",
                   help="score files <DMS_id>.csv with mutant, DMS_score (DMS_score_bin) and score columns, e.g. the "
                   "proteingym/ folder of a benchmark-dms run")
    p.add_argument("--reference-file", required=True, metavar="CSV",
                   help="ProteinGym's reference file (DMS_substitutions.csv): assays and their categories")
    p.add_argument("--model", action="append", default=[], metavar="NAME=COLUMN|NAME=DIR:COLUMN[:-1]",
                   help="a model to compare (repeatable): a column of the --scores files, or a column of the score "
                   "files in another folder (ProteinGym's layout, merged on mutant; ':-1' when lower is fitter)")
    p.add_argument("--combine", action="append", default=[], metavar="NAME=A+B",
                   help="a combination of models: the mean of their per-assay standardised scores (repeatable)")
    p.add_argument("--baseline", metavar="NAME", help="the model the others are compared to (default: the first)")
    p.add_argument("--metric", choices=METRICS, default="Spearman", help="ProteinGym's metric (default Spearman)")
    p.add_argument("--group-column", action="append", default=[], metavar="COLUMN",
                   help="another grouping of the assays (repeatable): a column of --groups, else of the reference "
                   "file, e.g. 'designed'")
    p.add_argument("--groups", metavar="CSV", help="a table with DMS_id and the --group-column columns")
    p.add_argument("--training-store", metavar="S",
                   help="a seqdance store (its train split) or a FASTA of training sequences: each assay protein's "
                   "highest identity to it (train_identity)")
    p.add_argument("--training-coverage", type=fraction, default=DEFAULT_COVERAGE, metavar="F",
                   help="alignment coverage of both sequences an identity needs (default 0.8, as the split)")
    p.add_argument("--max-train-identity", type=fraction, metavar="T",
                   help="leave out of the tests and means the assays whose identity to the training set is above T")
    p.add_argument("--no-figure", action="store_true", help="tables only (the figure needs the plots extra)")
    add_output_dir(p, "output folder")
    add_quiet_option(p)
    p.set_defaults(func=run_compare_dms)


def run_compare_dms(args: argparse.Namespace) -> int:
    from seqdance.errors import InputError
    from seqdance.extras import require_extra

    if not args.no_figure:
        require_extra("plots", "compare-dms (its figure; --no-figure for the tables only)", ("matplotlib",))
    if args.max_train_identity is not None and not args.training_store:
        raise InputError("--max-train-identity needs --training-store")
    from seqdance.io_utils import read_csv_table
    from seqdance.scoring.dms_compare import Combination, ScoreSource, compare_models, write_comparison
    from seqdance.scoring.proteingym_reference import read_reference

    reference = read_reference(args.reference_file)
    sources = [ScoreSource.parse(text) for text in args.model]
    combinations = [Combination.parse(text) for text in args.combine]
    groups = read_csv_table(args.groups) if args.groups else None
    identity = None
    if args.training_store:
        from seqdance.scoring.training_overlap import read_training_sequences, training_identity

        names, sequences, what = read_training_sequences(args.training_store)
        targets = {str(r["DMS_id"]): str(r["target_seq"]) for _, r in reference.table.iterrows()
                   if isinstance(r.get("target_seq"), str) and (args.scores / f"{r['DMS_id']}.csv").is_file()}
        identity = training_identity(targets, names, sequences, coverage=args.training_coverage)
        print(f"training overlap: {counted(len(identity), 'assay protein')} aligned to {what}", file=sys.stderr)

    def progress(ids):
        if args.quiet:
            return ids
        from tqdm.auto import tqdm

        return tqdm(ids, desc="compare-dms", unit="assay")

    result = compare_models(args.scores, reference, sources, combinations=combinations, baseline=args.baseline,
                            metric=args.metric, groups=groups, group_columns=args.group_column, identity=identity,
                            max_identity=args.max_train_identity, progress=progress)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    write_comparison(result, args.output, figure=not args.no_figure)
    shown = result.differences[result.differences["grouping"].isin(["all", "Taxon", "Selection Type"])]
    columns = ["grouping", "category", "comparison", "n_assays", "mean_difference", "se", "wilcoxon_p"]
    print(shown[columns].to_string(index=False, float_format=lambda x: f"{x:.3g}", na_rep="-"))
    included = int(result.per_assay["included"].sum())
    print(f"{counted(included, 'assay')} compared on {result.metric} (baseline {result.baseline}); tables"
          f"{'' if args.no_figure else ' and comparison.png'} in {args.output}")
    return 0
