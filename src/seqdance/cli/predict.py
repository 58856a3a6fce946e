"""``seqdance predict`` and ``seqdance embed``: dynamic properties / embeddings for every sequence of a FASTA file.

Both commands are resumable: finished outputs are skipped on a re-run, and every file is written atomically.
Invalid records (characters outside the ESM2 vocabulary, empty chains) stop the run before any prediction,
listing every bad record by id, unless ``--skip-invalid`` is given: then they are reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from seqdance.cli.options import int_at_least
from seqdance.errors import InputError
from seqdance.model.kinds import DEFAULT_MODEL_SOURCE, MODEL_SELECTS

if TYPE_CHECKING:  # numpy and torch load when a command runs, not when the parser is built
    from seqdance.io_utils import FastaRecord


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="FASTA file (chains of a complex joined by ':')")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_SOURCE,
        help=f"Hugging Face repo id or local model directory / checkpoint (default: {DEFAULT_MODEL_SOURCE})",
    )
    parser.add_argument(
        "--model-select",
        choices=MODEL_SELECTS,
        default=None,
        help="model kind; needed for a training checkpoint (update_*.pt), overrides config.json otherwise",
    )
    parser.add_argument(
        "--encoder", default=None, help="encoder preset of a training checkpoint whose shapes match no preset (e.g. 35M)"
    )
    parser.add_argument("--device", default="auto",
                        help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps ...")
    parser.add_argument(
        "--batch-tokens", type=int_at_least(3), default=None, metavar="N", help="padded tokens per batch (default: 4096)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip records the tokenizer rejects (reported on stderr) instead of stopping before any work",
    )
    parser.add_argument("--remove-gaps", action="store_true",
                        help="drop alignment gap characters ('-', '.') from the sequences (default: they are an error)")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.add_argument(
        "--shard", metavar="i/N", default=None,
        help="compute shard i (0-based) of N, balanced by tokens (SLURM arrays); under torchrun each rank takes "
        "its own shard; see docs/large_runs.md",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    pred = subparsers.add_parser(
        "predict",
        help="predict dynamic properties for every sequence of a FASTA file",
        description="Writes OUTDIR/<id>.npz per sequence (one array per property, residue-aligned) and "
        "OUTDIR/residues.csv (per-residue scalars and the most frequent secondary structure).",
    )
    _add_common(pred)
    pred.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output directory")
    pred.add_argument("--no-pairs", action="store_true", help="residue properties only (faster, less memory)")
    pred.add_argument("--embeddings", action="store_true", help="also store the embedding (L, d)")
    pred.add_argument(
        "--attention", action="store_true", help="also store the attention maps (L, L, layers*heads; large)"
    )
    pred.add_argument(
        "--plots", action="store_true",
        help="also draw OUTDIR/<id>.profiles.png (RMSF, SASA, secondary structure, GNM fluctuations) and "
        "OUTDIR/<id>.pairs.png (correlation, summed interactions, ANM correlation) per sequence",
    )
    pred.set_defaults(func=run_predict)

    emb = subparsers.add_parser(
        "embed",
        help="mean-pooled (and per-residue) embeddings of every sequence of a FASTA file, to HDF5",
        description="Writes OUT.h5 with /mean/<id> (mean over residues), /per_residue/<id> with --per-residue, "
        "and an /index.",
    )
    _add_common(emb)
    emb.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.h5", help="HDF5 file to write")
    emb.add_argument("--per-residue", action="store_true", help="also store per-residue embeddings (L, d)")
    emb.set_defaults(func=run_embed)


def _valid_records(path: Path, skip_invalid: bool, remove_gaps: bool = False) -> list[FastaRecord]:
    """FASTA records that tokenise; bad ones stop the run (listed by id) or are reported and dropped."""
    from seqdance.io_utils import read_fasta
    from seqdance.tokenizer import SequenceError, encode

    records = read_fasta(path, remove_gaps=remove_gaps)
    good: list[FastaRecord] = []
    bad: list[str] = []
    for record in records:
        try:
            encode(record.sequence, record.id)
        except SequenceError as exc:
            bad.append(str(exc))
        else:
            good.append(record)
    if bad and not skip_invalid:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(f"{path}: {len(bad)} invalid record(s): {listed} (use --skip-invalid to skip them)")
    for message in bad:
        print(f"skipped invalid record: {message}", file=sys.stderr)
    return good


def _model_name(source: str) -> str:
    """How outputs record the model: the absolute path of a local model, else the hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _load(args: argparse.Namespace):
    from seqdance.devices import resolve_device
    from seqdance.inference.sharding import local_rank
    from seqdance.model import load_model

    device = resolve_device(args.device, local_rank=local_rank())
    return load_model(args.model, model_select=args.model_select, encoder=args.encoder, device=device)


def _batch_tokens(args: argparse.Namespace) -> int:
    from seqdance.inference.predict import DEFAULT_MAX_TOKENS_PER_BATCH

    if args.batch_tokens is None:
        return DEFAULT_MAX_TOKENS_PER_BATCH
    if args.batch_tokens < 1:
        raise InputError(f"--batch-tokens must be positive, got {args.batch_tokens}")
    return args.batch_tokens


def report_run(report, shard, merged_what: str, merge_target: Path) -> None:
    """The end-of-run lines on stderr: throughput, and for a shard whether the combined output was written."""
    if report.throughput.sequences:
        print(f"computed {report.throughput.summary()}", file=sys.stderr)
    if shard is None:
        return
    if report.merged:
        print(f"shard {shard.label}: all {shard.count} shard(s) finished; {merged_what} written", file=sys.stderr)
    else:
        print(f"shard {shard.label}: done; the last shard to finish writes {merged_what} "
              f"(or run: seqdance merge {merge_target})", file=sys.stderr)


def run_predict(args: argparse.Namespace) -> int:
    from seqdance.inference.prediction_io import unique_stems
    from seqdance.inference.runs import RESIDUE_CSV, RunOptions, run_predictions
    from seqdance.inference.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    records = _valid_records(args.input, args.skip_invalid, args.remove_gaps)
    stems = unique_stems(r.id for r in records)
    from seqdance.finetuning.files import is_finetuned_dir

    if is_finetuned_dir(args.model):
        return run_predict_finetuned(args, records, stems, shard)
    options = RunOptions(pairs=not args.no_pairs, embeddings=args.embeddings, attentions=args.attention,
                         max_tokens_per_batch=_batch_tokens(args))
    model = _load(args)
    report = run_predictions(
        model, [r.id for r in records], [r.sequence for r in records], args.output, stems,
        model_name=_model_name(args.model), options=options, shard=shard, overwrite=args.overwrite,
        progress=not args.quiet,
    )
    n_plots = _draw_plots(records, stems, args) if args.plots else 0
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{report.n_written} predicted, {report.n_done} already done; {report.n_owned} files"
          + (f" and {RESIDUE_CSV} ({report.n_rows} residues)" if shard is None else "")
          + (f" and {n_plots} figures" if args.plots else "") + f" in {args.output}",
          file=sys.stderr)
    report_run(report, shard, RESIDUE_CSV, args.output)
    return 0


def run_predict_finetuned(args: argparse.Namespace, records: list[FastaRecord], stems: dict[str, str], shard) -> int:
    """``predict --model RUN/model``: the fine-tuned target(s) of every record, and the 23 properties beside them when
    the base is a dynamics model (docs/finetune.md)."""
    from seqdance.devices import resolve_device
    from seqdance.finetuning.files import load_finetuned
    from seqdance.finetuning.predict import dynamics_base, write_target_predictions
    from seqdance.inference.runs import RunOptions, run_predictions

    if shard is not None:
        raise InputError("a fine-tuned model predicts in one process: drop --shard (and torchrun)")
    model = load_finetuned(args.model, device=resolve_device(args.device))
    path = write_target_predictions(model, [r.id for r in records], [r.sequence for r in records], args.output, stems)
    print(f"wrote the fine-tuned target {model.info['target']!r} of {len(records)} sequence(s) to {path}",
          file=sys.stderr)
    base = dynamics_base(model)
    if base is not None:
        options = RunOptions(pairs=not args.no_pairs, embeddings=args.embeddings, attentions=args.attention,
                             max_tokens_per_batch=_batch_tokens(args))
        report = run_predictions(base, [r.id for r in records], [r.sequence for r in records], args.output, stems,
                                 model_name=_model_name(args.model), options=options, overwrite=args.overwrite,
                                 progress=not args.quiet)
        print(f"{report.n_written} predicted, {report.n_done} already done (the 23 properties of the base) in "
              f"{args.output}", file=sys.stderr)
    return 0


def _draw_plots(records: list[FastaRecord], stems: dict[str, str], args: argparse.Namespace) -> int:
    """Figures of every predicted record whose figures are missing or older than its prediction file."""
    from tqdm.auto import tqdm

    from seqdance.display.plots import plot_prediction
    from seqdance.inference.prediction_io import load_prediction

    out_dir: Path = args.output
    todo = []
    for record in records:
        npz, png = out_dir / f"{stems[record.id]}.npz", out_dir / f"{stems[record.id]}.profiles.png"
        if npz.is_file() and (not png.is_file() or png.stat().st_mtime_ns < npz.stat().st_mtime_ns):
            todo.append(record)
    drawn = 0
    for record in tqdm(todo, desc="predict plots", unit="sequence", disable=args.quiet or not todo):
        prediction = load_prediction(out_dir / f"{stems[record.id]}.npz")
        drawn += len(plot_prediction(prediction, out_dir, stems[record.id], model=_model_name(args.model)))
    return drawn


def run_embed(args: argparse.Namespace) -> int:
    from seqdance.inference.prediction_io import unique_stems
    from seqdance.inference.runs import run_embeddings
    from seqdance.inference.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    records = _valid_records(args.input, args.skip_invalid, args.remove_gaps)
    unique_stems(r.id for r in records)
    model = _load(args)
    report = run_embeddings(
        model, [r.id for r in records], [r.sequence for r in records], args.output,
        model_name=_model_name(args.model), per_residue=args.per_residue, max_tokens_per_batch=_batch_tokens(args),
        shard=shard, overwrite=args.overwrite, progress=False if args.quiet else "embed",  # the bar's name
    )
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{report.n_written} embedded, {report.n_done} already done"
          + (f"; {report.n_rows} entries in {args.output}" if report.merged else ""), file=sys.stderr)
    report_run(report, shard, str(args.output), args.output)
    return 0
