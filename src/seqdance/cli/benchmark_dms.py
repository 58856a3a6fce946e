"""``seqdance benchmark-dms``: zero-shot scores benchmarked on DMS assays in the ProteinGym layout
(:mod:`seqdance.scoring.dms`; resumable and shardable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_dir, deprecated_alias, int_at_least
from seqdance.cli.run_options import report_run
from seqdance.cli.scoring_options import add_scoring_options, check_pll, load_models, property_list
from seqdance.errors import InputError
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "benchmark-dms",
        help="benchmark zero-shot scores on DMS assays (ProteinGym layout)",
        description="Per-assay Spearman, NDCG@10%, top-decile AUC and top-10% recall of every property's "
        "change, the combined score and the ESM2 baselines; medians over assays (and per category).",
    )
    bench.add_argument("--assays", required=True, metavar="DIR",
                       help="folder with mutant/<assay>.csv (mutant + DMS_score or score) and fasta/<assay>.fasta")
    add_output_dir(bench, "output folder (resumable)", type=str)
    bench.add_argument("--reference-csv", metavar="CSV",
                       help="ProteinGym reference file (DMS_id, target_seq, category columns)")
    bench.add_argument("--category-column", action="append", default=[], metavar="COLUMN",
                       help="reference CSV column to summarise by (repeatable), e.g. coarse_selection_type")
    bench.add_argument("--max-variants", type=int_at_least(2), metavar="N",
                       help="score a random subset of at most N variants per assay (quick checks)")
    bench.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --max-variants subset (default 0)")
    bench.add_argument("--overwrite", action="store_true", help="recompute every assay, even finished ones")
    deprecated_alias(bench, "--restart", "--overwrite", "overwrite", takes_value=False)
    add_scoring_options(bench, " of the assays")
    bench.set_defaults(func=run_benchmark_dms)


def run_benchmark_dms(args: argparse.Namespace) -> int:
    import pandas as pd

    from seqdance.inference.sharding import resolve_shard
    from seqdance.scoring.dms import discover_assays, run_benchmark

    shard = resolve_shard(args.shard)
    properties = property_list(args.properties)
    esm_pll = check_pll(args)
    assays = discover_assays(args.assays, reference_csv=args.reference_csv, category_columns=args.category_column)
    model, esm_model = load_models(args)
    if args.finetuned_model is not None or model is None:
        raise InputError("benchmark-dms scores a dynamics model; evaluate a fine-tuned model with seqdance finetune's "
                         "folds instead (docs/finetune.md)")
    result = run_benchmark(
        assays, args.output, model=model, esm_model=esm_model, settings={"model": args.model, "esm2": args.esm2},
        properties=properties, region=args.region, local_radius=args.local_radius, batch_size=args.batch_size,
        window=args.window, max_variants=args.max_variants, seed=args.seed, skip_invalid=args.skip_invalid,
        restart=args.overwrite, category_columns=args.category_column, progress=not args.quiet,
        report=lambda message: print(message, file=sys.stderr), shard=shard, esm_pll=esm_pll,
    )
    done = result.per_assay["assay"].nunique() if len(result.per_assay) else 0
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{done:,} of {counted(len(assays), 'assay')} evaluated ({result.n_skipped:,} from an earlier run); "
          f"{len(result.failures):,} failed; results in {args.output}")
    report_run(result.report, noun="variant", merged_what="the summary tables", merge_target=args.output)
    if len(result.summary):
        from seqdance.scoring.metrics import METRIC_NAMES

        cols = [c for c in ("predictor", "n_assays", *METRIC_NAMES) if c in result.summary]
        print(result.summary[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-"))
        print("(medians over assays; '-': undefined on every assay; ProteinGym-layout files in "
              f"{Path(args.output) / 'proteingym'})")
    notes = result.per_assay["note"] if "note" in result.per_assay else pd.Series(dtype=object)
    flagged = result.per_assay[notes.notna() & (notes.astype(str) != "")]
    if len(flagged):
        names = ", ".join(dict.fromkeys(flagged["assay"]))
        print(f"note: metrics of {counted(flagged['assay'].nunique(), 'assay')} are undefined or 0 because of ties or "
              f"constant scores ({names}); the reasons are in the 'note' column of "
              f"{Path(args.output) / 'per_assay.csv'}", file=sys.stderr)
    return 1 if len(result.failures) else 0
