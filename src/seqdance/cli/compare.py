"""``seqdance compare``: how each variant changes the predicted dynamics of a wild type, residue by residue and pair
by pair, with pictures and structure files (:mod:`seqdance.scoring.compare_run`; resumable and shardable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_dir, int_at_least, number_between
from seqdance.cli.report import add_report_option, write_run_report
from seqdance.cli.run_options import model_name, report_run
from seqdance.cli.scoring_options import add_scoring_options, check_pll, load_models, property_list
from seqdance.errors import InputError
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="how each variant changes the predicted dynamics: per-residue and pairwise Δ, pictures, structures",
        description="For each variant (substitutions, or full sequences of any length: insertions and deletions are "
        "aligned to the wild type), the wild type's and the variant's predicted properties and their difference Δ "
        "on the wild type's residues: OUTDIR/<variant>.npz and .csv, the most changed residues and pairs "
        "(<variant>.top.csv), summary.csv (the scalar scores of 'seqdance score' per variant); with --plots, "
        "pictures; with --structure, a structure file coloured by a chosen Δ. See docs/compare.md.",
    )
    wild = parser.add_mutually_exclusive_group(required=True)
    wild.add_argument("--sequence", metavar="SEQ", help="wild-type sequence (one chain)")
    wild.add_argument("--fasta", metavar="FILE", help="FASTA file holding the wild type")
    parser.add_argument("--fasta-id", metavar="ID", help="the wild type's record in a FASTA file of several")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--mutants", nargs="+", metavar="MUTANT",
                       help="mutants to compare, e.g. A23G L45P:A60V (or full variant sequences)")
    given.add_argument("--mutations", metavar="FILE",
                       help="a table with a 'mutant' column (and optionally 'mutated_sequence', of any length) or a "
                       "plain list, one mutant per line, as 'seqdance score' reads it")
    given.add_argument("--variants", metavar="VARIANTS.fasta",
                       help="variant sequences (any length), each named by its FASTA id")
    add_output_dir(parser, "output folder (resumable)")
    parser.add_argument("--offset", type=int, default=1, metavar="N",
                        help="number of the first residue of the wild type in mutant names and outputs (default 1)")
    parser.add_argument("--plots", action="store_true",
                        help="also draw per variant <variant>.profiles.png and <variant>.pairs.png (needs matplotlib)")
    parser.add_argument("--structure", type=Path, metavar="STRUCTURE",
                        help="a structure of the wild type (.pdb or .cif): per variant a B-factor file of a chosen Δ, "
                        "its ChimeraX attribute file and ChimeraX and PyMOL scripts colouring it (needs gemmi)")
    parser.add_argument("--structure-property", default="rmsf_nor", metavar="NAME",
                        help="the Δ put on the structure: a per-residue property (signed Δ; default rmsf_nor) or a "
                        "pair property (Σ over partners of |Δ|)")
    parser.add_argument("--chain", default=None, metavar="A",
                        help="the structure chain of the wild type (default: the best match)")
    parser.add_argument("--background", type=int_at_least(0), default=0, metavar="N",
                        help="also compare N seeded random single substitutions elsewhere in the protein, drawn as "
                        "a reference band (and a background percentile in summary.csv)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the --background substitutions (default 0)")
    parser.add_argument("--top", type=int_at_least(1), default=10, metavar="K",
                        help="residues and pairs listed per property in <variant>.top.csv (default 10)")
    parser.add_argument("--threshold", type=number_between(0.0, 1e9), default=0.1, metavar="T",
                        help="a residue counts as changed in a property family when its relative change exceeds T "
                        "(default 0.1, i.e. 10%%)")
    parser.add_argument("--overwrite", action="store_true",
                        help="compare every variant again, even those whose files check out")
    add_scoring_options(parser, " of the variants' batches")
    add_report_option(parser)
    parser.set_defaults(func=run_compare_command)


def _wild_type(args: argparse.Namespace) -> str:
    from seqdance.scoring.mutations import check_wild_type
    from seqdance.scoring.single import fasta_wild_type

    if args.sequence is not None:
        if args.fasta_id is not None:
            raise InputError("--fasta-id names a record of --fasta")
        return check_wild_type(args.sequence, "--sequence")
    return fasta_wild_type(args.fasta, args.fasta_id)


def read_variants(args: argparse.Namespace, wild_type: str) -> tuple[list, list[str]]:
    """The variants to compare and their names; invalid ones stop the command (one line each, as score) unless
    --skip-invalid."""
    from seqdance.scoring.compare import variant_name
    from seqdance.scoring.mutations import MutationError, invalid_summary, parse_mutants, read_mutations

    if args.variants is not None:
        from seqdance.io_utils import read_fasta
        from seqdance.scoring.mutations import sequence_variant

        variants, names, bad = [], [], []
        for record in read_fasta(args.variants):
            try:
                variants.append(sequence_variant(record.id, record.sequence, wild_type, offset=args.offset))
                names.append(record.id)
            except MutationError as exc:
                bad.append(f"{args.variants}:{record.id}: {exc}")
        if bad and not args.skip_invalid:
            raise InputError(bad[0] + (f" (and {counted(len(bad) - 1, 'more invalid record')})" if len(bad) > 1 else "")
                             + "; use --skip-invalid to compare the rest")
        for line in bad:
            print(f"skipped {line}", file=sys.stderr)
    else:
        if args.mutants is not None:
            texts, sequences, source = list(args.mutants), None, "--mutants"
        else:
            table = read_mutations(args.mutations)
            texts = table["mutant"].tolist()
            sequences = table["mutated_sequence"].tolist() if "mutated_sequence" in table.columns else None
            source = str(args.mutations)
        checked = parse_mutants(texts, wild_type, offset=args.offset, mutated_sequences=sequences, indels=True)
        if checked.invalid:
            if not args.skip_invalid:
                raise InputError(invalid_summary(checked.invalid, source, limit=5)
                                 + "\n(use --skip-invalid to compare the rest)")
            print(invalid_summary(checked.invalid, source, limit=5), file=sys.stderr)
        variants = list(checked.variants)
        names = [variant_name(v, args.offset) for v in variants]
    if not variants:
        raise InputError("no valid variants to compare")
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if name in seen:
            raise InputError(f"variant {name!r} is given twice (variants {seen[name] + 1} and {k + 1}): each variant "
                             "names its output files; give it once")
        seen[name] = k
    return variants, names


def _structure_choice(args: argparse.Namespace, properties: list[str] | None) -> None:
    from seqdance.schema import PROPERTY_BY_NAME

    if args.structure is None:
        return
    name = args.structure_property
    prop = PROPERTY_BY_NAME.get(name)
    if prop is None or (prop.is_residue and prop.width != 1):
        raise InputError(f"--structure-property {name!r}: choose a per-residue scalar (sasa_mean, sasa_std, rmsf_nor, "
                         "nma_res1..3) or a pair property")
    if properties is not None and name not in properties:
        raise InputError(f"--structure-property {name} is not among --properties ({', '.join(properties)})")
    if not args.structure.is_file():
        raise FileNotFoundError(f"structure file not found: {args.structure}")


def run_compare_command(args: argparse.Namespace) -> int:
    from seqdance.inference.sharding import resolve_shard
    from seqdance.scoring.compare_run import SUMMARY_CSV, CompareOutputs, CompareSettings, run_compare

    shard = resolve_shard(args.shard)
    wild_type = _wild_type(args)
    properties = property_list(args.properties)
    esm_pll = check_pll(args)
    _structure_choice(args, properties)
    variants, names = read_variants(args, wild_type)
    chains = [c.strip() for c in args.chain.split(",") if c.strip()] if args.chain else None
    structure_key = None
    if args.structure is not None:
        from seqdance.display.structure_map import check_structure
        from seqdance.io_utils import sha256_file

        for match in check_structure(wild_type, args.structure, chains=chains):
            print(f"structure: {match.summary().replace('prediction chain 1', 'wild type')}", file=sys.stderr)
        structure_key = f"{sha256_file(args.structure)}:{','.join(chains or [])}"
    if args.output.exists() and not args.output.is_dir():
        raise InputError(f"-o {args.output}: compare writes a folder (one set of files per variant); give a folder")
    model, esm_model = load_models(args)
    if args.finetuned_model is not None or model is None:
        raise InputError("compare predicts dynamics: give a SeqDance/ESMDance model (a fine-tuned model predicts its "
                         "own target; score it with seqdance score --target)")
    settings = CompareSettings(properties=tuple(properties) if properties else None, region=args.region,
                               local_radius=args.local_radius, window=args.window, offset=args.offset, top=args.top,
                               threshold=args.threshold, esm_pll=esm_pll)
    outputs = CompareOutputs(plots=args.plots, structure=structure_key,
                             structure_property=args.structure_property if structure_key else None,
                             background=args.background, seed=args.seed if args.background else 0)
    draw = _drawer(settings) if args.plots else None
    structure = _structure_writer(args, wild_type, chains) if args.structure is not None else None
    report = run_compare(wild_type, variants, args.output, model=model, model_name=model_name(args.model),
                         esm_model=esm_model, names=names, settings=settings, outputs=outputs,
                         batch_size=args.batch_size, draw=draw, structure=structure, shard=shard,
                         overwrite=args.overwrite, progress=not args.quiet)
    same = [name for name, v in zip(names, variants) if v.is_synonymous]
    if same:
        shown = ", ".join(same[:5]) + (f" and {len(same) - 5} more" if len(same) > 5 else "")
        print(f"note: {counted(len(same), 'variant')} identical to the wild type ({shown}): Δ = 0 everywhere",
              file=sys.stderr)
    scope = f"shard {shard.label}: " if shard else ""
    merged = f"; {SUMMARY_CSV} ({counted(report.n_combined, 'variant')})" if report.merged else ""
    print(f"{scope}{counted(report.n_computed, 'variant')} compared, {report.n_done:,} already done, of "
          f"{report.n_owned:,}{merged} in {args.output}")
    report_run(report, noun="variant", merged_what=str(args.output / SUMMARY_CSV), merge_target=args.output)
    write_run_report(args, args.output, complete=report.merged, model=model)
    return 0


def _drawer(settings):
    from seqdance.display.compare_plots import plot_comparison
    from seqdance.schema import get_properties

    pairs = any(p.is_pair for p in get_properties(list(settings.properties) if settings.properties else None))

    def draw(comparison, files, band) -> None:
        plot_comparison(comparison, files.path("profiles.png"), files.path("pairs.png") if pairs else None, band=band)

    return draw


def _structure_writer(args: argparse.Namespace, wild_type: str, chains):
    from seqdance.display.structure_map import write_delta_structure
    from seqdance.schema import PROPERTY_BY_NAME

    name = args.structure_property
    pair = PROPERTY_BY_NAME[name].is_pair

    def write(comparison, files) -> None:
        values = comparison.pair_summary(name) if pair else comparison.delta[name]
        what = f"Σ over partners of |Δ {name}|" if pair else f"Δ {name} (variant − wild type)"
        write_delta_structure(values, wild_type, args.structure, files.path(f"delta_{name}.cif"),
                              property_name=f"delta_{name}", title=f"{what} of {comparison.name}", chains=chains)

    return write
