"""``seqdance benchmark-dms``: zero-shot scores benchmarked on DMS assays in the ProteinGym layout
(:mod:`seqdance.scoring.dms`; resumable and shardable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_dir, deprecated_alias, fraction, int_at_least
from seqdance.cli.run_options import report_run
from seqdance.cli.scoring_options import add_scoring_options, check_pll, load_models, property_list
from seqdance.errors import InputError
from seqdance.scoring.options import DEFAULT_BOOTSTRAP_SAMPLES
from seqdance.store.options import DEFAULT_COVERAGE
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
    bench.add_argument("--reference-file", dest="reference_file", metavar="CSV",
                       help="ProteinGym reference file (DMS_substitutions.csv: DMS_id, DMS_filename, target_seq, "
                       "UniProt_ID, ...): assays by DMS_id, wild types, and ProteinGym's own tables in "
                       "OUTDIR/proteingym/<Metric>/ (needs the proteingym extra)")
    deprecated_alias(bench, "--reference-csv", "--reference-file", "reference_file", metavar="CSV")
    bench.add_argument("--category-column", action="append", default=[], metavar="COLUMN",
                       help="reference file column to summarise the median tables by (repeatable), e.g. taxon")
    gym = bench.add_argument_group("ProteinGym (with --reference-file)")
    gym.add_argument("--performance-by-depth", action="store_true",
                     help="ProteinGym's tables also per mutation depth (1, 2, 3, 4, 5+ mutations)")
    gym.add_argument("--bootstrap-samples", type=int_at_least(2), default=DEFAULT_BOOTSTRAP_SAMPLES, metavar="N",
                     help="bootstrap resamples of ProteinGym's standard errors (default 10000, as ProteinGym)")
    gym.add_argument("--bootstrap-seed", type=int, default=0, metavar="S",
                     help="seed of the bootstrap (default 0; ProteinGym's script leaves it unseeded)")
    gym.add_argument("--indels", action="store_true",
                     help="the assays are ProteinGym indel assays (reference DMS_indels.csv, files with "
                     "mutated_sequence)")
    gym.add_argument("--proteingym-export", metavar="DIR", type=Path,
                     help="write a submission kit here (score files per DMS_id, a config.json entry, a README) "
                     "and check it as ProteinGym's scripts read it")
    gym.add_argument("--export-name", metavar="NAME",
                     help="the model's name in the kit (folder and config key; default: from --model)")
    overlap = bench.add_argument_group("training-set overlap")
    overlap.add_argument("--training-store", metavar="S",
                         help="a seqdance store (its train split) or a FASTA of training sequences: adds each assay "
                         "protein's highest identity to it (train_identity) to the tables")
    overlap.add_argument("--training-coverage", type=fraction, default=DEFAULT_COVERAGE, metavar="F",
                         help="alignment coverage of both sequences an identity needs (default 0.8, as the split)")
    bench.add_argument("--max-variants", type=int_at_least(2), metavar="N",
                       help="score a random subset of at most N variants per assay (quick checks)")
    bench.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --max-variants subset (default 0)")
    bench.add_argument("--overwrite", action="store_true", help="recompute every assay, even finished ones")
    deprecated_alias(bench, "--restart", "--overwrite", "overwrite", takes_value=False)
    add_scoring_options(bench, " of the assays")
    bench.set_defaults(func=run_benchmark_dms)


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def run_benchmark_dms(args: argparse.Namespace) -> int:
    import pandas as pd

    from seqdance.inference.sharding import resolve_shard
    from seqdance.scoring.dms import ProteinGymOptions, find_assays
    from seqdance.scoring.dms import run_benchmark as run

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    shard = resolve_shard(args.shard)
    properties = property_list(args.properties)
    esm_pll = check_pll(args)
    if args.reference_file is None and (args.performance_by_depth or args.proteingym_export or args.indels):
        raise InputError("--performance-by-depth, --proteingym-export and --indels need ProteinGym's reference file: "
                         "give --reference-file")
    found = find_assays(args.assays, reference_file=args.reference_file, category_columns=args.category_column,
                        mutation_type="indels" if args.indels else "substitutions")
    assays, reference, gym = found.assays, found.reference, None
    if found.missing:
        say(f"note: {counted(len(found.missing), 'DMS_id')} of {reference.path.name} "
            f"{'has' if len(found.missing) == 1 else 'have'} no assay file in {args.assays} "
            f"(listed in missing_assays.csv); the other assays run: {_listed(found.missing)}")
    if reference is not None and reference.has_aggregation_columns:
        from seqdance.extras import require_extra

        require_extra("proteingym", "benchmark-dms --reference-file (ProteinGym's tables)")
        gym = ProteinGymOptions(args.performance_by_depth, args.bootstrap_samples, args.bootstrap_seed)
        if found.unmatched:
            say(f"note: {counted(len(found.unmatched), 'assay')} without a row in {reference.path.name} "
                f"{'is' if len(found.unmatched) == 1 else 'are'} left out of "
                f"ProteinGym's tables: {_listed(found.unmatched)}")
    elif reference is not None:
        say(f"note: {reference.path.name} lacks {', '.join(reference.missing_aggregation_columns)}: ProteinGym's "
            "tables are not written (the median tables are)")
        if args.performance_by_depth or args.proteingym_export:
            raise InputError(f"{reference.path}: --performance-by-depth and --proteingym-export need ProteinGym's "
                             f"reference columns ({', '.join(reference.missing_aggregation_columns)} missing)")
    export_name = _export_name(args) if args.proteingym_export else None
    identity = _training_identity(args, assays, say) if args.training_store else None
    model, esm_model = load_models(args)
    if args.finetuned_model is not None or model is None:
        raise InputError("benchmark-dms scores a dynamics model; evaluate a fine-tuned model with seqdance finetune's "
                         "folds instead (docs/finetune.md)")
    result = run(
        assays, args.output, model=model, esm_model=esm_model, settings={"model": args.model, "esm2": args.esm2},
        properties=properties, region=args.region, local_radius=args.local_radius, batch_size=args.batch_size,
        window=args.window, max_variants=args.max_variants, seed=args.seed, skip_invalid=args.skip_invalid,
        restart=args.overwrite, category_columns=args.category_column, progress=not args.quiet,
        report=say, shard=shard, esm_pll=esm_pll, proteingym=gym, reference=reference, missing=found.missing,
        training_identity=identity,
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
    if gym is not None and result.report.merged:
        print(f"ProteinGym's tables (proteingym {_proteingym_version()}): {Path(args.output) / 'proteingym'}/<Metric>/")
    export_ok = True
    if export_name is not None and result.report.merged:
        export_ok = _export(args, export_name, found, result, model, esm_model)
    notes = result.per_assay["note"] if "note" in result.per_assay else pd.Series(dtype=object)
    flagged = result.per_assay[notes.notna() & (notes.astype(str) != "")]
    if len(flagged):
        names = ", ".join(dict.fromkeys(flagged["assay"]))
        print(f"note: metrics of {counted(flagged['assay'].nunique(), 'assay')} are undefined or 0 because of ties or "
              f"constant scores ({names}); the reasons are in the 'note' column of "
              f"{Path(args.output) / 'per_assay.csv'}", file=sys.stderr)
    return 1 if len(result.failures) or not export_ok else 0


def _proteingym_version() -> str:
    from seqdance.scoring.proteingym_package import version

    return version()


def _export_name(args: argparse.Namespace) -> str:
    from seqdance.scoring.proteingym_export import check_name

    if args.export_name:
        return check_name(args.export_name)
    stem = Path(str(args.model).rstrip("/")).name or "seqdance"
    stem = stem.removesuffix(".pt")
    return check_name("".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in stem).lstrip("._-") or "seqdance")


def _training_identity(args: argparse.Namespace, assays, say):
    from seqdance.scoring.training_overlap import IDENTITY_COLUMN, read_training_sequences, training_identity

    names, sequences, what = read_training_sequences(args.training_store)
    queries = {a.name: a.wild_type for a in assays if a.wild_type}
    table = training_identity(queries, names, sequences, coverage=args.training_coverage)
    close = int((table[IDENTITY_COLUMN].fillna(0) >= 0.5).sum())
    say(f"training overlap: {counted(len(table), 'assay protein')} aligned to {what}; {close} at identity >= 0.5 "
        f"(coverage >= {args.training_coverage:g} of both)")
    return table


def _export(args: argparse.Namespace, name: str, found, result, model, esm_model) -> bool:
    """Write the submission kit and read it back as ProteinGym's scripts do; False when the check finds problems."""
    import shlex

    from seqdance import __version__
    from seqdance.inference.fingerprint import module_fingerprint
    from seqdance.scoring.proteingym_export import check_export, export_submission

    done = set(result.per_assay["assay"]) if len(result.per_assay) else set()
    rows = found.reference.rows()
    dms_ids = [a.name for a in found.assays if a.name in done and a.name in rows]
    about = {
        "model": args.model, "model fingerprint": module_fingerprint(model),
        "ESM2 baselines": args.esm2 or "none",
        "ESM2 fingerprint": module_fingerprint(esm_model) if esm_model is not None else "none",
        "properties": " ".join(args.properties) if args.properties else "all 23",
        "region": args.region, "window": args.window, "max variants": args.max_variants or "all",
        "seqdance version": __version__, "proteingym version": _proteingym_version(),
        "reference file": found.reference.path.name,
        "command": "seqdance " + shlex.join(getattr(args, "command_argv", [])),
    }
    report = export_submission(args.output, args.proteingym_export, dms_ids=dms_ids, name=name,
                               mutation_type=found.reference.mutation_type, about=about)
    check = check_export(args.proteingym_export, found.reference,
                         {a.name: a.table_path for a in found.assays if a.name in dms_ids})
    print(f"ProteinGym submission kit: {counted(report.n_assays, 'score file')}, "
          f"{counted(len(report.entries), 'config entry')} in {args.proteingym_export}")
    for line in check.notes:
        print(f"note: export check: {line}", file=sys.stderr)
    for line in check.problems:
        print(f"error: export check: {line}", file=sys.stderr)
    if check.ok:
        print(f"export check: OK ({counted(len(check.merged), 'assay')} read as ProteinGym's merge.py and "
              "performance_DMS_benchmarks.py read their inputs)")
    return check.ok
