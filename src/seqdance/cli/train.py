"""``seqdance train``, ``seqdance evaluate`` and ``seqdance loss-weights``.

``train`` runs the same way in one process and under ``torchrun`` (one process per GPU, any number of
nodes); see docs/training.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from seqdance.cli.options import (
    SOURCE,
    STORE,
    add_device_option,
    add_dtype_option,
    add_output_dir,
    add_output_file,
    add_quiet_option,
    deprecated_alias,
    dtype_argument,
    int_at_least,
)
from seqdance.errors import InputError
from seqdance.model.kinds import MODEL_SELECTS
from seqdance.schema import ESM2_MAX_TOKENS, SOURCE_GROUPS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    tr = subparsers.add_parser(
        "train",
        help="train SeqDance or ESMDance from a YAML config (single process or under torchrun)",
        description="Train a dynamics model. Launch with torchrun for several GPUs / nodes: "
        "torchrun --nproc_per_node=4 --no-python seqdance train --config CONFIG.yaml",
    )
    tr.add_argument("--config", type=Path, required=True, metavar="CONFIG.yaml", help="training config (YAML; see "
                    "configs/)")
    tr.add_argument("--resume", action="store_true",
                    help="continue from the latest checkpoint in the output directory (fresh start if none)")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry, e.g. --set optim.lr=3e-4 --set data.store=my.h5 (repeatable)")
    tr.add_argument("--stop-after", type=int_at_least(1), default=None, metavar="N",
                    help="stop (with a checkpoint) after update N; the schedule still follows total_updates")
    add_output_dir(tr, "output folder (default: the config's output_dir; the same as --set output_dir=OUTDIR)",
                   required=False, default=None, type=str)
    add_quiet_option(tr)
    tr.set_defaults(func=run_train)

    ev = subparsers.add_parser(
        "evaluate",
        help="test loss and dynamic-property metrics of a model on a dataset store",
        description="Writes OUTDIR/losses.csv, metrics.csv, per_protein.csv, summary.md and evaluation.png.",
    )
    ev.add_argument("--model", required=True, metavar=SOURCE,
                    help="model: HF repo id, save_pretrained dir or update_*.pt file")
    ev.add_argument("--store", type=Path, action="append", required=True, metavar=STORE,
                    help="dataset store (repeatable); the released HDF5 needs its index CSV beside it")
    ev.add_argument("--split", default="test", metavar="LABEL", help="split label to evaluate (default: test)")
    add_output_dir(ev, "output folder")
    ev.add_argument("--groups", nargs="+", default=None, choices=SOURCE_GROUPS,
                    help="source groups (default: all present)")
    ev.add_argument("--weights", type=Path, default=None, metavar="CSV",
                    help="loss-weight CSV for the weighted group totals (default: the training run's "
                    "loss_weights.csv beside the model directory, else unweighted sums)")
    base = ev.add_mutually_exclusive_group()
    base.add_argument("--mean-baseline", action="store_true",
                      help="also report the loss of predicting each channel's training mean (scans the train split)")
    base.add_argument("--baseline-means", type=Path, default=None, metavar="CSV",
                      help="channel means CSV written by 'seqdance loss-weights' (*_channel_means.csv)")
    ev.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                    help="needed for update_*.pt state dicts without config")
    ev.add_argument("--max-tokens", type=int_at_least(3), default=ESM2_MAX_TOKENS, metavar="N",
                    help=f"N-terminal window per protein (default {ESM2_MAX_TOKENS})")
    ev.add_argument("--batch-size", type=int_at_least(1), default=4, metavar="N", help="proteins per batch (default 4)")
    add_device_option(ev)
    add_dtype_option(ev)
    deprecated_alias(ev, "--precision", "--dtype", "dtype", type=dtype_argument, metavar="fp32|bf16|fp16")
    add_quiet_option(ev)
    ev.set_defaults(func=run_evaluate)

    lw = subparsers.add_parser(
        "loss-weights",
        help="compute the docs/design.md#loss-weights loss weights from a store, or normalise a released weight table",
        description="Writes OUTPUT (wide CSV: property x group), OUTPUT_details.csv (baselines, shares) and "
        "OUTPUT_channel_means.csv (training means, for 'evaluate --baseline-means').",
    )
    src = lw.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", type=Path, action="append", metavar=STORE, help="dataset store (repeatable)")
    src.add_argument("--table", type=Path, metavar="CSV", help="an existing table (e.g. the released "
                     "source_feature_rmse_weight.csv) to check and rewrite in our layout")
    add_output_file(lw, "csv", "weights CSV to write")
    lw.add_argument("--split", default="train", metavar="LABEL",
                    help="split label the statistics come from (default: train)")
    lw.add_argument("--max-proteins", type=int_at_least(1), default=None, metavar="N",
                    help="estimate from at most N random proteins per group")
    lw.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --max-proteins subset (default 0)")
    lw.add_argument("--baseline-floor", type=float, default=None, metavar="F",
                    help="raise a baseline below F x the largest baseline of its kind in the group, e.g. of the "
                    "nine interactions (default 0.02; 0: off)")
    lw.add_argument("--max-weight-ratio", type=float, default=None, metavar="R",
                    help="cap weights at R x the group's median weight (default 25; 0: off)")
    add_quiet_option(lw)
    lw.set_defaults(func=run_loss_weights)


def run_train(args: argparse.Namespace) -> int:
    from seqdance.train.config import TrainConfig
    from seqdance.train.trainer import train

    overrides = list(args.overrides)
    if args.output is not None:
        import json

        overrides.append(f"output_dir={json.dumps(args.output)}")
    if args.quiet:
        overrides.append("progress=false")
    config = TrainConfig.from_yaml(args.config, overrides)
    if args.stop_after is not None and args.stop_after < 1:
        raise InputError("--stop-after must be ≥ 1")
    result = train(config, resume=args.resume, stop_after=args.stop_after)
    import os

    if os.environ.get("RANK", "0") == "0":
        state = "stopped early" if result.stopped_early else "done"
        print(f"{state} at update {result.last_update}/{config.total_updates}; outputs in {config.output_dir}",
              file=sys.stderr)
        if result.model_dir is not None:
            print(f"model saved to {result.model_dir}", file=sys.stderr)
    return 0


def _open_stores(paths: list[Path]) -> list:
    from seqdance.store import DynamicsStore

    return [DynamicsStore.open(p) for p in paths]


def run_evaluate(args: argparse.Namespace) -> int:

    from seqdance import load_model
    from seqdance.devices import model_dtype, resolve_device
    from seqdance.train.evaluate import evaluate_model, write_report
    from seqdance.train.weights import compute_store_statistics, load_loss_weights, read_channel_means

    stores = _open_stores(args.store)
    device = resolve_device(args.device, default="auto")
    from seqdance.model.hints import model_option

    with model_option("--model", "--model-select"):
        model = load_model(str(args.model), model_select=args.model_select, device=device,
                           dtype=model_dtype(args.dtype))
    weights_path = args.weights
    if weights_path is None:
        guess = Path(args.model).parent / "loss_weights.csv"
        if Path(args.model).is_dir() and guess.is_file():
            weights_path = guess
    weights = load_loss_weights(weights_path).to_dict() if weights_path is not None else None
    if weights is None:
        print("note: no loss-weight table given or found; group totals are unweighted sums", file=sys.stderr)
    means = None
    if args.baseline_means is not None:
        means = read_channel_means(args.baseline_means)
    elif args.mean_baseline:
        stats = compute_store_statistics(stores, split="train", groups=args.groups, progress=not args.quiet)
        means = {g: {"residue": stats.residue_means[g], "pair": stats.pair_means[g]} for g in stats.residue_means}
    result = evaluate_model(
        model, stores, split=args.split, groups=args.groups, weights=weights, channel_means=means,
        max_tokens=args.max_tokens, batch_size=args.batch_size, device=device,
        progress=not args.quiet,
    )
    assert result is not None
    if result.per_protein.empty:
        raise InputError(f"no proteins with split label {args.split!r} in {', '.join(map(str, args.store))}")
    paths = write_report(result, args.output, title=str(args.model))
    print((args.output / "summary.md").read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def run_loss_weights(args: argparse.Namespace) -> int:
    from seqdance.train.weights import compute_store_statistics, load_loss_weights, write_statistics

    if args.table is not None:
        weights = load_loss_weights(args.table)
        path = weights.write_csv(args.output)
        print(f"read {args.table} (groups {', '.join(weights.groups)}); wrote {path}", file=sys.stderr)
        return 0
    from seqdance.train.weights import BASELINE_FLOOR, MAX_WEIGHT_RATIO

    floor = BASELINE_FLOOR if args.baseline_floor is None else args.baseline_floor
    ratio = MAX_WEIGHT_RATIO if args.max_weight_ratio is None else (args.max_weight_ratio or None)
    stats = compute_store_statistics(
        _open_stores(args.store), split=args.split, max_proteins_per_group=args.max_proteins, seed=args.seed,
        progress=not args.quiet, baseline_floor=floor, max_weight_ratio=ratio,
    )
    paths = write_statistics(stats, args.output)
    print(stats.details_frame().to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
