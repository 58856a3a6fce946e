"""``seqdance predict``: dynamic properties for every sequence of a FASTA file.

Resumable (finished outputs are skipped on a re-run; every file is written atomically) and shardable
(:mod:`seqdance.inference.runs`). Invalid records stop the run before any prediction, listed by id, unless
``--skip-invalid``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import (
    SOURCE,
    add_device_option,
    add_dtype_option,
    add_output_dir,
    add_quiet_option,
    int_at_least,
)
from seqdance.cli.report import add_report_option, write_run_report
from seqdance.cli.run_options import add_shard_option, model_name, report_run
from seqdance.errors import InputError
from seqdance.model.kinds import DEFAULT_MODEL_SOURCE, MODEL_SELECTS
from seqdance.wording import counted


def add_fasta_run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``embed`` share."""
    parser.add_argument("input", type=Path, help="FASTA file (chains of a complex joined by ':')")
    parser.add_argument("--model", default=DEFAULT_MODEL_SOURCE, metavar=SOURCE,
                        help=f"Hugging Face repo id or local model directory / checkpoint (default: "
                        f"{DEFAULT_MODEL_SOURCE})")
    parser.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                        help="model kind; needed for a training checkpoint (update_*.pt), overrides config.json "
                        "otherwise")
    parser.add_argument("--encoder", default=None, metavar="PRESET",
                        help="encoder preset of a training checkpoint whose shapes match no preset (e.g. 35M)")
    add_device_option(parser)
    add_dtype_option(parser)
    parser.add_argument("--batch-tokens", type=int_at_least(3), default=None, metavar="N",
                        help="padded tokens per batch (default: 4096)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records the tokenizer rejects (reported on stderr) instead of stopping before any "
                        "work")
    parser.add_argument("--remove-gaps", action="store_true",
                        help="drop alignment gap characters ('-', '.') from the sequences (default: they are an error)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    add_shard_option(parser)
    add_quiet_option(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    pred = subparsers.add_parser(
        "predict",
        help="predict dynamic properties for every sequence of a FASTA file",
        description="Writes OUTDIR/<id>.npz per sequence (one array per property, residue-aligned) and "
        "OUTDIR/residues.csv (per-residue scalars and the most frequent secondary structure).",
    )
    add_fasta_run_options(pred)
    add_output_dir(pred, "output folder")
    pred.add_argument("--no-pairs", action="store_true", help="residue properties only (faster, less memory)")
    pred.add_argument("--embeddings", action="store_true", help="also store the embedding (L, d)")
    pred.add_argument("--attention", action="store_true",
                      help="also store the attention maps (L, L, layers*heads; large)")
    pred.add_argument("--plots", action="store_true",
                      help="also draw OUTDIR/<id>.profiles.png (RMSF, SASA, secondary structure, GNM fluctuations) "
                      "and OUTDIR/<id>.pairs.png (correlation, summed interactions, ANM correlation) per sequence")
    add_report_option(pred)
    pred.set_defaults(func=run_predict)


def read_inputs(args: argparse.Namespace):
    """The valid FASTA records (invalid ones stop the run or, with --skip-invalid, are reported)."""
    from seqdance.inference.records import read_records

    records = read_records(args.input, skip_invalid=args.skip_invalid, remove_gaps=args.remove_gaps)
    for message in records.skipped:
        print(f"skipped invalid record: {message}", file=sys.stderr)
    return records


def load(args: argparse.Namespace):
    """The model of ``--model`` on ``--device`` (torchrun: the rank's own GPU)."""
    from seqdance.devices import model_dtype, resolve_device
    from seqdance.inference.sharding import local_rank
    from seqdance.model import load_model
    from seqdance.model.hints import model_option

    device = resolve_device(args.device, local_rank=local_rank())
    with model_option("--model", "--model-select"):
        return load_model(args.model, model_select=args.model_select, encoder=args.encoder, device=device,
                          dtype=model_dtype(args.dtype))


def batch_tokens(args: argparse.Namespace) -> int:
    from seqdance.inference.predict import DEFAULT_MAX_TOKENS_PER_BATCH

    return args.batch_tokens or DEFAULT_MAX_TOKENS_PER_BATCH


def run_predict(args: argparse.Namespace) -> int:
    from seqdance.inference.prediction_io import unique_stems
    from seqdance.inference.runs import RESIDUE_CSV, RunOptions, run_predictions
    from seqdance.inference.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    records = read_inputs(args)
    stems = unique_stems(records.ids)
    from seqdance.finetuning.files import is_finetuned_dir

    if is_finetuned_dir(args.model):
        return run_predict_finetuned(args, records, stems, shard)
    options = RunOptions(pairs=not args.no_pairs, embeddings=args.embeddings, attentions=args.attention,
                         max_tokens_per_batch=batch_tokens(args))
    report = run_predictions(load(args), records.ids, None, args.output, stems, model_name=model_name(args.model),
                             options=options, shard=shard, overwrite=args.overwrite, progress=not args.quiet,
                             encoded=records.encoded)
    n_plots = 0
    if args.plots:
        from seqdance.display.plots import plot_predictions

        n_plots = plot_predictions(args.output, {i: stems[i] for i in records.ids if i not in report.failures},
                                   model=model_name(args.model), progress=not args.quiet)
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{report.n_computed:,} predicted, {report.n_done:,} already done; {counted(report.n_owned, 'file')}"
          + (f" and {RESIDUE_CSV} ({counted(report.n_combined, 'residue')})" if shard is None else "")
          + (f" and {counted(n_plots, 'figure')}" if args.plots else "") + f" in {args.output}", file=sys.stderr)
    report_run(report, noun="sequence", merged_what=RESIDUE_CSV, merge_target=args.output)
    write_run_report(args, args.output, complete=report.merged)
    return 0


def run_predict_finetuned(args: argparse.Namespace, records, stems: dict[str, str], shard) -> int:
    """``predict --model RUN/model``: the fine-tuned target(s) of every record, and the 23 properties beside them when
    the base is a dynamics model (docs/finetune.md)."""
    from seqdance.devices import resolve_device
    from seqdance.finetuning.files import load_finetuned
    from seqdance.finetuning.predict import dynamics_base, write_target_predictions
    from seqdance.inference.runs import RunOptions, run_predictions

    if shard is not None:
        raise InputError("a fine-tuned model predicts in one process: drop --shard (and torchrun)")
    if args.dtype != "float32":
        raise InputError("a fine-tuned model runs in float32: drop --dtype")
    model = load_finetuned(args.model, device=resolve_device(args.device))
    path = write_target_predictions(model, records.ids, records.sequences, args.output, stems)
    print(f"wrote the fine-tuned target {model.info['target']!r} of {counted(len(records.ids), 'sequence')} to {path}",
          file=sys.stderr)
    base = dynamics_base(model)
    if base is not None:
        options = RunOptions(pairs=not args.no_pairs, embeddings=args.embeddings, attentions=args.attention,
                             max_tokens_per_batch=batch_tokens(args))
        report = run_predictions(base, records.ids, None, args.output, stems, model_name=model_name(args.model),
                                 options=options, overwrite=args.overwrite, progress=not args.quiet,
                                 encoded=records.encoded)
        print(f"{report.n_computed} predicted, {report.n_done} already done (the 23 properties of the base) in "
              f"{args.output}", file=sys.stderr)
    return 0
