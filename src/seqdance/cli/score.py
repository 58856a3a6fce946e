"""``seqdance score``: zero-shot mutation effects from predicted dynamics (and ESM2 baselines).

One wild type gives one CSV (:mod:`seqdance.scoring.single`); a FASTA file of several gives a folder with one table
per protein and a combined ``scores.csv``, resumable and shardable (:mod:`seqdance.scoring.proteins`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import UsageError, check_output_file, output_file
from seqdance.cli.report import add_report_option, write_run_report
from seqdance.cli.run_options import report_run
from seqdance.cli.scoring_options import add_scoring_options, check_pll, load_models, property_list
from seqdance.errors import InputError
from seqdance.wording import counted


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
                      "'mutated_sequence' is checked, and one of another length is an insertion or deletion) or a "
                      "plain list, one mutant per line (also L10_K12del, A20_K21insGSG or full sequences)")
    muts.add_argument("--saturation", action="store_true", help="all 19 x L single substitutions")
    score.add_argument("-o", "--output", required=True, metavar="OUT.csv|OUTDIR",
                       help="output CSV, one row per variant (a folder when scoring several proteins)")
    score.add_argument("--offset", type=int, default=1, metavar="N",
                       help="number of the first residue of the wild type in the mutant names (default 1)")
    score.add_argument("--heatmap", metavar="OUT.png", type=output_file("figure"),
                       help="also draw a position x amino-acid heat map (format from the suffix: .png, .pdf, "
                       ".svg, ...)")
    score.add_argument("--heatmap-column", default=None, metavar="COLUMN",
                       help="column drawn in the heat map (default: score)")
    score.add_argument("--overwrite", action="store_true",
                       help="several proteins: score every protein again, even those whose table is complete (one "
                       "protein's CSV is always replaced)")
    score.add_argument("--target", default=None, metavar="COLUMN",
                       help="with a fine-tuned model (--model RUN/model): score by its prediction of this target, "
                       "mutant minus wild type, column finetuned_<COLUMN> (docs/finetune.md)")
    add_scoring_options(score, " of the proteins")
    add_report_option(score)
    score.set_defaults(func=run_score)


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
    from seqdance.scoring.proteins import (
        COMBINED_CSV,
        INVALID_CSV,
        ScoreSettings,
        protein_tasks,
        run_protein_scores,
        write_invalid,
    )

    out = Path(args.output)
    if out.suffix.lower() in (".csv", ".tsv") or out.is_file():
        raise UsageError(f"-o {out}: scoring several proteins writes a folder (one table per protein and a combined "
                         f"{COMBINED_CSV}); give a folder name")
    if args.heatmap:
        raise InputError("--heatmap draws one protein; score it alone (--fasta-id ID) to draw its map")
    properties = property_list(args.properties)
    esm_pll = check_pll(args)
    tasks, invalid = protein_tasks(records, args.fasta, mutations=None if args.saturation else args.mutations,
                                   id_column=args.id_column or "id", offset=args.offset, window=args.window,
                                   skip_invalid=args.skip_invalid)
    model, esm_model = load_models(args)  # before any output exists: a model that cannot load leaves nothing
    if args.finetuned_model is not None:
        raise InputError("fine-tuned scores (--target) are computed for one wild type at a time: --sequence, or "
                         "--fasta with --fasta-id")
    out.mkdir(parents=True, exist_ok=True)
    if invalid:
        write_invalid(out, invalid)
        print(f"skipped {counted(len(invalid), 'invalid mutant')}; all listed in {out / INVALID_CSV}", file=sys.stderr)
    settings = ScoreSettings(properties=tuple(properties) if properties else None, region=args.region,
                             local_radius=args.local_radius, window=args.window, offset=args.offset,
                             esm_pll=esm_pll)
    result = run_protein_scores(tasks, out, model=model, esm_model=esm_model, settings=settings,
                                batch_size=args.batch_size, shard=shard, overwrite=args.overwrite,
                                progress=not args.quiet)
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{counted(result.n_computed, 'protein')} scored, {result.n_done:,} already done, of "
          f"{result.n_owned:,}"
          + (f"; {COMBINED_CSV} ({counted(result.n_combined, 'variant')}) in {out}" if result.merged else f" in {out}"))
    report_run(result, noun="variant", merged_what=str(out / COMBINED_CSV), merge_target=out)
    write_run_report(args, out, complete=result.merged, model=model)
    return 0


def _run_score_one(args: argparse.Namespace) -> int:
    from seqdance.scoring.mutations import invalid_summary
    from seqdance.scoring.proteins import variant_table
    from seqdance.scoring.scorer import SCORE_COLUMN, score_variants
    from seqdance.scoring.single import fasta_wild_type, protein_variants, write_scores

    check_output_file(args.output, "csv")  # one protein: one CSV table
    properties = property_list(args.properties)
    esm_pll = check_pll(args)
    if args.sequence is not None:
        from seqdance.scoring.mutations import check_wild_type

        wild_type = check_wild_type(args.sequence, "--sequence")
    else:
        wild_type = fasta_wild_type(args.fasta, args.fasta_id)
    chosen = protein_variants(wild_type, mutations=None if args.saturation else args.mutations, offset=args.offset,
                              window=args.window, skip_invalid=args.skip_invalid)
    model, esm_model = load_models(args)
    if len(wild_type) > args.window:
        print(f"the wild type has {counted(len(wild_type), 'residue')}, more than the {args.window}-residue window: "
              f"each variant is scored on a window of {counted(args.window, 'residue')} around its sites",
              file=sys.stderr)
    if model is None and esm_model is None:  # a fine-tuned model on a plain ESM2: its own scores only
        import pandas as pd

        scores = pd.DataFrame(index=range(len(chosen.variants)))
    else:
        scores = score_variants(wild_type, chosen.variants, model=model, esm_model=esm_model, properties=properties,
                                region=args.region, local_radius=args.local_radius, batch_size=args.batch_size,
                                window=args.window, progress=not args.quiet, esm_pll=esm_pll)
    if args.finetuned_model is not None:
        import pandas as pd

        from seqdance.finetuning.predict import score_mutants_finetuned

        extra = score_mutants_finetuned(args.finetuned_model, wild_type, chosen.variants, target=args.target)
        scores = pd.concat([scores.reset_index(drop=True), extra], axis=1)
    result = variant_table(chosen.rows, chosen.variants, scores)
    invalid_path = write_scores(args.output, result, chosen.invalid)
    print(f"wrote {counted(len(result), 'variant')} to {args.output}")
    if invalid_path is not None:
        print(invalid_summary(chosen.invalid, chosen.source, limit=5), file=sys.stderr)
        print(f"skipped {counted(len(chosen.invalid), 'invalid mutant')}; all listed in {invalid_path}",
              file=sys.stderr)
    if args.heatmap:
        from seqdance.io_utils import model_display_name
        from seqdance.scoring.heatmap import damaging_end, plot_score_heatmap

        column = args.heatmap_column or SCORE_COLUMN
        if column not in result.columns:
            raise InputError(f"--heatmap-column {column!r} is not an output column ({', '.join(scores.columns)})")
        damaging = damaging_end(column)
        direction = {"low": " (higher = fitter)", "high": " (larger = more damaging)"}.get(damaging or "", "")
        source = args.model or getattr(args, "esm2", None)
        drawn = plot_score_heatmap(args.heatmap, wild_type, chosen.variants, result[column].to_numpy(dtype=float),
                                   offset=args.offset, label=column + direction, damaging=damaging,
                                   title=f"{column} of single substitutions"
                                   + (f" — {model_display_name(source)}" if source else ""))
        print(f"wrote heat map of {counted(drawn, 'substitution')} to {args.heatmap}")
    write_run_report(args, Path(args.output), model=model)
    return 0
