"""``seqdance score`` and ``seqdance benchmark-dms``: zero-shot mutation effects and their DMS benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import int_at_least
from seqdance.errors import InputError
from seqdance.schema import PROPERTY_NAMES


def _property_list(values: list[str] | None) -> list[str] | None:
    """Property names from ``--properties`` (space- or comma-separated); None means all."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROPERTY_NAMES]
    if unknown:
        raise InputError(f"unknown property name(s) {unknown}; known: {', '.join(PROPERTY_NAMES)}")
    return names


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    from seqdance.schema import ESM2_MAX_RESIDUES
    from seqdance.scoring.options import DEFAULT_LOCAL_RADIUS, REGIONS

    parser.add_argument("--model", required=True, metavar="SOURCE",
                        help="dynamics model: Hugging Face id (e.g. ChaoHou/ESMDance), local folder or update_*.pt")
    parser.add_argument("--esm2", metavar="SOURCE",
                        help="also score with an ESM2 masked LM (e.g. facebook/esm2_t12_35M_UR50D or a local folder): "
                        "masked-marginal and wild-type-marginal log-likelihood ratios")
    parser.add_argument("--properties", nargs="+", metavar="NAME",
                        help="properties to score (default: all 23); only residue properties -> fast path without "
                        "pair outputs")
    parser.add_argument("--region", choices=REGIONS, default="reference",
                        help="entries averaged in each property's change: 'reference' = all tokens incl. <cls>/<eos> "
                        "and all pairs (the published definition, default); 'residues' = residue tokens only; "
                        "'local' = residues near the mutated sites")
    parser.add_argument("--local-radius", type=int_at_least(0), default=DEFAULT_LOCAL_RADIUS, metavar="R",
                        help=f"half-width in residues of the 'local' region (default {DEFAULT_LOCAL_RADIUS})")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip invalid mutants (reported) instead of stopping")
    parser.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                        help="mutants per forward pass (default: chosen from the protein length)")
    parser.add_argument("--window", type=int_at_least(1, maximum=ESM2_MAX_RESIDUES), default=ESM2_MAX_RESIDUES, metavar="N",
                        help=f"most residues per forward pass (default {ESM2_MAX_RESIDUES}, the ESM2 limit); longer "
                        "proteins are scored on a window of N residues around each variant's sites")
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--shard", metavar="i/N", default=None,
                        help="compute shard i (0-based) of N of the proteins / assays, balanced by cost (SLURM "
                        "arrays); under torchrun each rank takes its own shard; see docs/large_runs.md")
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score",
        help="zero-shot mutation effects from predicted dynamics (and ESM2 baselines)",
        description="Score mutants of one wild type: per-property relative change of the predicted dynamics "
        "(change_<property>, >= 0), the combined 'score' (minus the geometric mean of the quantile-normalised "
        "changes; higher = fitter, ProteinGym convention) and, with --esm2, ESM2 log-likelihood ratios.",
    )
    seq = score.add_mutually_exclusive_group(required=True)
    seq.add_argument("--sequence", metavar="SEQ", help="wild-type sequence (one chain)")
    seq.add_argument("--fasta", metavar="FILE",
                     help="FASTA file holding the wild type, or several wild types (each scored; -o is then a "
                     "folder with one table per protein and a combined scores.csv)")
    score.add_argument("--fasta-id", metavar="ID", help="score only this record of a FASTA file of several")
    score.add_argument("--id-column", metavar="COLUMN",
                       help="column of the mutation table naming each row's FASTA record (several proteins; "
                       "default: 'id' when the FASTA file holds several records)")
    muts = score.add_mutually_exclusive_group(required=True)
    muts.add_argument("--mutations", metavar="FILE",
                      help="CSV/TSV with a 'mutant' column (ProteinGym: A23G, multi-mutants A23G:L45P; optional "
                      "'mutated_sequence' is checked) or a plain list, one mutant per line")
    muts.add_argument("--saturation", action="store_true", help="all 19 x L single substitutions")
    score.add_argument("-o", "--output", required=True, metavar="OUT.csv",
                       help="output CSV, one row per variant (a folder when scoring several proteins)")
    score.add_argument("--offset", type=int, default=1, metavar="N",
                       help="number of the first residue of the wild type in the mutant names (default 1)")
    score.add_argument("--heatmap", metavar="OUT.png", help="also draw a position x amino-acid heat map")
    score.add_argument("--heatmap-column", default=None, metavar="COLUMN",
                       help="column drawn in the heat map (default: score)")
    score.add_argument("--target", default=None, metavar="COLUMN",
                       help="with a fine-tuned model (--model RUN/model): score by its prediction of this target, "
                       "mutant minus wild type, column finetuned_<COLUMN> (docs/finetune.md)")
    _add_scoring_options(score)
    score.set_defaults(func=run_score)

    bench = subparsers.add_parser(
        "benchmark-dms",
        help="benchmark zero-shot scores on DMS assays (ProteinGym layout)",
        description="Per-assay Spearman, NDCG@10%, top-decile AUC and top-10% recall of every property's "
        "change, the combined score and the ESM2 baselines; medians over assays (and per category).",
    )
    bench.add_argument("--assays", required=True, metavar="DIR",
                       help="folder with mutant/<assay>.csv (mutant + DMS_score or score) and fasta/<assay>.fasta")
    bench.add_argument("-o", "--output", required=True, metavar="RESULTS", help="output folder (resumable)")
    bench.add_argument("--reference-csv", metavar="CSV",
                       help="ProteinGym reference file (DMS_id, target_seq, category columns)")
    bench.add_argument("--category-column", action="append", default=[], metavar="COLUMN",
                       help="reference CSV column to summarise by (repeatable), e.g. coarse_selection_type")
    bench.add_argument("--max-variants", type=int_at_least(2), metavar="N",
                       help="score a random subset of at most N variants per assay (quick checks)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the --max-variants subset (default 0)")
    bench.add_argument("--overwrite", "--restart", dest="overwrite", action="store_true",
                       help="recompute every assay, even finished ones")
    _add_scoring_options(bench)
    bench.set_defaults(func=run_benchmark_dms)


def _load_models(args: argparse.Namespace):
    from seqdance.schema import ESM2_MAX_RESIDUES

    if not 1 <= args.window <= ESM2_MAX_RESIDUES:
        raise InputError(f"--window must be between 1 and {ESM2_MAX_RESIDUES} residues, got {args.window}")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    from seqdance.devices import resolve_device
    from seqdance.inference.sharding import local_rank

    model = _load_dynamics_or_finetuned(args, resolve_device(args.device, local_rank=local_rank()))
    esm_model = None
    if args.esm2:
        from seqdance.model import load_esm2_masked_lm

        device = next((model or args.finetuned_model).parameters()).device
        esm_model = load_esm2_masked_lm(args.esm2, device=device)
    return model, esm_model


def _load_dynamics_or_finetuned(args: argparse.Namespace, device):
    """The dynamics model to score with; a fine-tuned model folder is kept in ``args.finetuned_model`` and its
    dynamics base (None for an ESM2 base) is returned."""
    from seqdance.finetuning.files import is_finetuned_dir
    from seqdance.model import load_model

    args.finetuned_model = None
    if not is_finetuned_dir(args.model):
        if getattr(args, "target", None):
            raise InputError(f"--target scores with a fine-tuned model (--model RUN/model); {args.model} is not one")
        return load_model(args.model, device=device)
    if getattr(args, "target", None) is None:
        raise InputError(f"{args.model} is a fine-tuned model: name its target with --target (docs/finetune.md)")
    from seqdance.finetuning.files import load_finetuned
    from seqdance.finetuning.predict import dynamics_base

    args.finetuned_model = load_finetuned(args.model, device=device)
    return dynamics_base(args.finetuned_model)


def _wild_type(args: argparse.Namespace) -> str:
    from seqdance.io_utils import read_fasta
    from seqdance.scoring.mutations import check_wild_type

    if args.sequence is not None:
        return check_wild_type(args.sequence, "--sequence")
    records = read_fasta(args.fasta)
    if args.fasta_id is not None:
        chosen = [r for r in records if r.id == args.fasta_id]
        if not chosen:
            raise InputError(f"{args.fasta}: no record {args.fasta_id!r} (records: {[r.id for r in records][:10]})")
        record = chosen[0]
    elif len(records) == 1:
        record = records[0]
    else:
        raise InputError(f"{args.fasta} holds {len(records)} records; choose one with --fasta-id")
    return check_wild_type(record.sequence, f"{args.fasta}:{record.id}")


def _many_proteins(args: argparse.Namespace, shard) -> list | None:
    """The FASTA records to score when this run scores several proteins, else None (one wild type)."""
    if args.fasta is None or args.fasta_id is not None:
        if shard is not None:
            raise InputError("shards (--shard, or the ranks of torchrun) split the proteins of a FASTA file of "
                             "several wild types; one protein is scored by one process")
        if args.id_column is not None:
            raise InputError("--id-column needs --fasta with the wild types (and no --fasta-id)")
        return None
    from seqdance.io_utils import read_fasta

    records = read_fasta(args.fasta)
    if len(records) == 1 and args.id_column is None and shard is None:
        return None
    return records


def run_score(args: argparse.Namespace) -> int:
    from seqdance.inference.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    records = _many_proteins(args, shard)
    if records is not None:
        return _run_score_many(args, records, shard)
    return _run_score_one(args)


def _run_score_many(args: argparse.Namespace, records: list, shard) -> int:
    from seqdance.scoring.mutations import read_mutations
    from seqdance.scoring.proteins import (
        COMBINED_CSV,
        INVALID_CSV,
        ScoreSettings,
        run_protein_scores,
        saturation_tasks,
        table_tasks,
        write_invalid,
    )

    out = Path(args.output)
    if out.suffix.lower() in (".csv", ".tsv") or out.is_file():
        raise InputError(f"-o {out}: scoring several proteins writes a folder (one table per protein and a combined "
                         f"{COMBINED_CSV}); give a folder name")
    if args.heatmap:
        raise InputError("--heatmap draws one protein; score it alone (--fasta-id ID) to draw its map")
    properties = _property_list(args.properties)
    if args.saturation:
        tasks, invalid = saturation_tasks(records, args.fasta, offset=args.offset), []
    else:
        table = read_mutations(args.mutations)
        tasks, invalid = table_tasks(records, table, args.mutations, id_column=args.id_column or "id",
                                     offset=args.offset, window=args.window)
        if invalid and not args.skip_invalid:
            listed = "; ".join(str(i) for i in invalid[:5]) + (f"; and {len(invalid) - 5} more" if len(invalid) > 5
                                                               else "")
            raise InputError(f"{args.mutations}: {len(invalid)} invalid mutant(s): {listed} "
                             "(use --skip-invalid to score the rest)")
    if not tasks:
        raise InputError("no valid mutants to score")
    model, esm_model = _load_models(args)  # before any output exists: a model that cannot load leaves nothing
    if args.finetuned_model is not None:
        raise InputError("fine-tuned scores (--target) are computed for one wild type at a time: --sequence, or "
                         "--fasta with --fasta-id")
    out.mkdir(parents=True, exist_ok=True)
    if invalid:
        write_invalid(out, invalid)
        print(f"skipped {len(invalid)} invalid mutant(s); all listed in {out / INVALID_CSV}", file=sys.stderr)
    settings = ScoreSettings(properties=tuple(properties) if properties else None, region=args.region,
                             local_radius=args.local_radius, window=args.window, offset=args.offset)
    result = run_protein_scores(tasks, out, model=model, esm_model=esm_model, settings=settings,
                                batch_size=args.batch_size, shard=shard, progress=not args.quiet)
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{result.n_scored} protein(s) scored, {result.n_done} already done, of {result.n_owned}"
          + (f"; {COMBINED_CSV} ({result.n_rows} variants) in {out}" if result.merged else f" in {out}"))
    if result.n_variants:
        print(f"scored {result.throughput.summary('variants')}", file=sys.stderr)
    if shard is not None and not result.merged:
        print(f"shard {shard.label}: the last shard to finish writes {out / COMBINED_CSV} "
              f"(or run: seqdance merge {out})", file=sys.stderr)
    return 0


def _run_score_one(args: argparse.Namespace) -> int:
    import pandas as pd

    from seqdance.io_utils import atomic_path
    from seqdance.scoring.mutations import (
        invalid_summary,
        parse_mutants,
        read_mutations,
        saturation_mutants,
    )
    from seqdance.scoring.proteins import variant_table
    from seqdance.scoring.scorer import SCORE_COLUMN, score_variants
    from seqdance.scoring.windows import drop_unscorable

    properties = _property_list(args.properties)
    wild_type = _wild_type(args)
    if args.saturation:
        variants = saturation_mutants(wild_type, offset=args.offset)
        rows = pd.DataFrame({"mutant": [v.mutant for v in variants]})
        invalid = []
    else:
        table = read_mutations(args.mutations)
        sequences = table["mutated_sequence"].tolist() if "mutated_sequence" in table.columns else None
        checked = parse_mutants(table["mutant"].tolist(), wild_type, offset=args.offset, mutated_sequences=sequences)
        checked = drop_unscorable(checked, len(wild_type), size=args.window)
        invalid = checked.invalid
        if invalid and not args.skip_invalid:
            raise InputError(invalid_summary(invalid, args.mutations) + "\n(use --skip-invalid to score the rest)")
        variants = checked.variants
        rows = table.iloc[[r - 1 for r in checked.rows]].reset_index(drop=True)
    if not variants:
        raise InputError("no valid mutants to score")

    model, esm_model = _load_models(args)
    if len(wild_type) > args.window:
        print(f"the wild type has {len(wild_type)} residues, more than the {args.window}-residue window: each "
              f"variant is scored on a window of {args.window} residues around its sites", file=sys.stderr)
    if model is None and esm_model is None:  # a fine-tuned model on a plain ESM2: its own scores only
        scores = pd.DataFrame(index=range(len(variants)))
    else:
        scores = score_variants(
            wild_type, variants, model=model, esm_model=esm_model, properties=properties, region=args.region,
            local_radius=args.local_radius, batch_size=args.batch_size, window=args.window,
            progress=not args.quiet,
        )
    if args.finetuned_model is not None:
        from seqdance.finetuning.predict import score_mutants_finetuned

        extra = score_mutants_finetuned(args.finetuned_model, wild_type, variants, target=args.target)
        scores = pd.concat([scores.reset_index(drop=True), extra], axis=1)
    result = variant_table(rows, variants, scores)
    out = Path(args.output)
    with atomic_path(out) as tmp:
        result.to_csv(tmp, index=False)
    print(f"wrote {len(result)} variant(s) to {out}")
    if invalid:
        invalid_path = out.with_name(out.stem + ".invalid.csv")
        frame = pd.DataFrame([{"row": i.row, "mutant": i.mutant, "reason": i.reason} for i in invalid])
        with atomic_path(invalid_path) as tmp:
            frame.to_csv(tmp, index=False)
        print(invalid_summary(invalid, args.mutations, limit=5), file=sys.stderr)
        print(f"skipped {len(invalid)} invalid mutant(s); all listed in {invalid_path}", file=sys.stderr)
    if args.heatmap:
        from seqdance.scoring.heatmap import plot_score_heatmap

        column = args.heatmap_column or SCORE_COLUMN
        if column not in result.columns:
            raise InputError(f"--heatmap-column {column!r} is not an output column ({', '.join(scores.columns)})")
        drawn = plot_score_heatmap(
            args.heatmap, wild_type, variants, result[column].to_numpy(dtype=float), offset=args.offset,
            label=column, title=f"{column} of single substitutions",
        )
        print(f"wrote heat map of {drawn} substitution(s) to {args.heatmap}")
    return 0


def run_benchmark_dms(args: argparse.Namespace) -> int:
    import pandas as pd

    from seqdance.inference.sharding import resolve_shard
    from seqdance.scoring.dms import discover_assays, run_benchmark

    shard = resolve_shard(args.shard)
    properties = _property_list(args.properties)
    if args.max_variants is not None and args.max_variants < 2:
        raise InputError("--max-variants must be at least 2")
    assays = discover_assays(args.assays, reference_csv=args.reference_csv, category_columns=args.category_column)
    model, esm_model = _load_models(args)
    if args.finetuned_model is not None or model is None:
        raise InputError("benchmark-dms scores a dynamics model; evaluate a fine-tuned model with seqdance finetune's "
                         "folds instead (docs/finetune.md)")

    def report(message: str) -> None:
        print(message, file=sys.stderr)

    result = run_benchmark(
        assays, args.output, model=model, esm_model=esm_model,
        settings={"model": args.model, "esm2": args.esm2}, properties=properties, region=args.region,
        local_radius=args.local_radius, batch_size=args.batch_size, window=args.window,
        max_variants=args.max_variants,
        seed=args.seed, skip_invalid=args.skip_invalid, restart=args.overwrite,
        category_columns=args.category_column, progress=not args.quiet, report=report, shard=shard,
    )
    done = result.per_assay["assay"].nunique() if len(result.per_assay) else 0
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{done} of {len(assays)} assay(s) evaluated ({len(result.skipped)} from an earlier run); "
          f"{len(result.failures)} failed; results in {args.output}")
    if shard is not None and not len(result.summary):
        print(f"shard {shard.label}: the last shard to finish writes the summary tables "
              f"(or run: seqdance merge {args.output})", file=sys.stderr)
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
        print(f"note: metrics of {flagged['assay'].nunique()} assay(s) are undefined or 0 because of ties or "
              f"constant scores ({names}); the reasons are in the 'note' column of {Path(args.output) / 'per_assay.csv'}",
              file=sys.stderr)
    return 1 if len(result.failures) else 0
