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

from seqdance.model.kinds import DEFAULT_MODEL_SOURCE, MODEL_SELECTS

if TYPE_CHECKING:  # numpy and torch load when a command runs, not when the parser is built
    from seqdance.io_utils import FastaRecord

RESIDUE_CSV = "residues.csv"


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
        "--batch-tokens", type=int, default=None, metavar="N", help="padded tokens per batch (default: 4096)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip records the tokenizer rejects (reported on stderr) instead of stopping before any work",
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
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


def _valid_records(path: Path, skip_invalid: bool) -> list[FastaRecord]:
    """FASTA records that tokenise; bad ones stop the run (listed by id) or are reported and dropped."""
    from seqdance.io_utils import read_fasta
    from seqdance.tokenizer import SequenceError, encode

    records = read_fasta(path)
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
        raise ValueError(f"{path}: {len(bad)} invalid record(s): {listed} (use --skip-invalid to skip them)")
    for message in bad:
        print(f"skipped invalid record: {message}", file=sys.stderr)
    return good


def _predict_options(args: argparse.Namespace) -> dict:
    # the model is already on its device (_load); the bar is named after the command
    options: dict = {"progress": False if args.quiet else (getattr(args, "command", None) or True)}
    if args.batch_tokens is not None:
        options["max_tokens_per_batch"] = args.batch_tokens
    return options


def _model_name(source: str) -> str:
    """How outputs record the model: the absolute path of a local model, else the hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _load(args: argparse.Namespace):
    from seqdance.devices import resolve_device
    from seqdance.model import load_model

    device = resolve_device(args.device)
    return load_model(args.model, model_select=args.model_select, encoder=args.encoder, device=device)


def _is_complete(path: Path, wanted: set[str], model: str) -> bool:
    """Whether an existing prediction file has every wanted key and came from ``model``."""
    import numpy as np

    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            found_model = str(data["model"]) if "model" in data.files else None
            complete = wanted <= set(data.files)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} exists but is not a readable prediction file ({exc}); remove it") from exc
    if found_model is not None and found_model != model:
        raise ValueError(
            f"{path} was predicted with model {found_model!r}, not {model!r}; use another output directory "
            "or --overwrite"
        )
    return complete


def run_predict(args: argparse.Namespace) -> int:
    from seqdance.inference.predict import iter_predictions
    from seqdance.inference.prediction_io import save_prediction, unique_stems, write_residue_csv
    from seqdance.schema import PROPERTIES

    records = _valid_records(args.input, args.skip_invalid)
    stems = unique_stems(r.id for r in records)
    model_name = _model_name(args.model)
    out_dir: Path = args.output
    wanted = {p.name for p in PROPERTIES if p.is_residue or not args.no_pairs}
    wanted |= {"embedding"} if args.embeddings else set()
    wanted |= {"attention"} if args.attention else set()
    pending = [
        r for r in records if args.overwrite or not _is_complete(out_dir / f"{stems[r.id]}.npz", wanted, model_name)
    ]
    if pending:
        model = _load(args)  # before any output exists: a model that cannot be loaded leaves nothing behind
        out_dir.mkdir(parents=True, exist_ok=True)
        results = iter_predictions(
            model,
            [r.sequence for r in pending],
            ids=[r.id for r in pending],
            pairs=not args.no_pairs,
            embeddings=args.embeddings,
            attentions=args.attention,
            **_predict_options(args),
        )
        for _, prediction in results:
            save_prediction(out_dir / f"{stems[prediction.id]}.npz", prediction, model=model_name)
    n_rows = write_residue_csv(out_dir / RESIDUE_CSV, (out_dir / f"{stems[r.id]}.npz" for r in records))
    n_plots = _draw_plots(records, stems, {r.id for r in pending}, args) if args.plots else 0
    print(
        f"{len(pending)} predicted, {len(records) - len(pending)} already done; "
        f"{len(records)} files and {RESIDUE_CSV} ({n_rows} residues)"
        + (f" and {n_plots} figures" if args.plots else "") + f" in {out_dir}",
        file=sys.stderr,
    )
    return 0


def _draw_plots(records: list[FastaRecord], stems: dict[str, str], fresh: set[str], args: argparse.Namespace) -> int:
    """Figures of every record whose figures are missing or whose prediction was just (re)computed."""
    from tqdm.auto import tqdm

    from seqdance.display.plots import plot_prediction
    from seqdance.inference.prediction_io import load_prediction

    out_dir: Path = args.output
    todo = [r for r in records if r.id in fresh or not (out_dir / f"{stems[r.id]}.profiles.png").exists()]
    drawn = 0
    for record in tqdm(todo, desc="predict plots", unit="sequence", disable=args.quiet or not todo):
        prediction = load_prediction(out_dir / f"{stems[record.id]}.npz")
        drawn += len(plot_prediction(prediction, out_dir, stems[record.id], model=_model_name(args.model)))
    return drawn


def run_embed(args: argparse.Namespace) -> int:
    from seqdance.inference.embedding_store import EmbeddingWriter
    from seqdance.inference.predict import iter_predictions
    from seqdance.inference.prediction_io import unique_stems

    records = _valid_records(args.input, args.skip_invalid)
    unique_stems(r.id for r in records)
    model = _load(args) if args.overwrite else None  # --overwrite drops the old file only once a model is loaded
    writer = EmbeddingWriter(
        args.output, model=_model_name(args.model), per_residue=args.per_residue, overwrite=args.overwrite
    )
    pending = [r for r in records if not writer.is_done(r.id)]
    if pending:
        model = model if model is not None else _load(args)
        results = iter_predictions(
            model,
            [r.sequence for r in pending],
            ids=[r.id for r in pending],
            pairs=False,
            embeddings=True,
            **_predict_options(args),
        )
        try:
            for _, prediction in results:
                writer.add(prediction)
        finally:
            writer.flush()  # keep what is done, even when interrupted
    total = writer.close(order=[r.id for r in records])
    print(f"{len(pending)} embedded, {len(records) - len(pending)} already done; {total} entries in {args.output}",
          file=sys.stderr)
    return 0
