"""``seqdance analyze attention``: how each attention head agrees with the stored pair properties
(docs/design.md#attention-metrics)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seqdance.cli.options import (
    SOURCE,
    STORE,
    add_device_option,
    add_dtype_option,
    add_output_dir,
    add_quiet_option,
    int_at_least,
)
from seqdance.cli.run_options import add_shard_option, report_run
from seqdance.model.kinds import MODEL_SELECTS
from seqdance.schema import ESM2_MAX_TOKENS
from seqdance.wording import counted

#: The fewest tokens per protein every metric can be defined on (seqdance.analysis.attention.MIN_TOKENS; kept
#: here as a literal so that building the parser loads no numeric library, and checked equal by a test).
ATTENTION_MIN_TOKENS = 9


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="what a model learned: attention analysis (see also 'probe')")
    group = parser.add_subparsers(dest="analyze_command", metavar="ANALYSIS")
    att = group.add_parser(
        "attention",
        help="per-head agreement of attention maps with co-movement and interactions of a store's proteins",
        description=(
            "For every MD/IDR protein of a split of a dataset store, runs the model on its first 1,024 tokens and "
            "scores every attention head against the stored pair targets: the released notebook's metrics "
            "(co-movement top-L ratio, positive/negative Spearman; interaction top-L ratio, AUROC) and the "
            "paper's (symmetrised attention, |i-j| > 5, Spearman). Writes DIR/per_head.csv (protein x head), "
            "summary.csv (median per head and group), best_heads.csv, summary.md and a layer x head heat map "
            "per metric. Works for SeqDance/ESMDance models and plain ESM2 checkpoints. Resumable."
        ),
    )
    att.add_argument("--model", required=True, metavar=SOURCE,
                     help="SeqDance/ESMDance (hub id, local folder, update_*.pt) or a plain ESM2 (facebook/esm2_* "
                          "id, preset such as 35M, or a local folder in that layout)")
    att.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                     help="model kind of a training checkpoint that does not record it")
    att.add_argument("--store", required=True, type=Path, metavar=STORE, help="dataset store")
    att.add_argument("--index", type=Path, default=None, metavar="CSV",
                     help="index CSV of a released-layout store (default: the CSV beside it)")
    att.add_argument("--split", default="test", metavar="LABEL",
                     help="split label of the proteins to analyse, or 'all' (default: test)")
    att.add_argument("--names", nargs="+", metavar="NAME", help="analyse only these proteins")
    att.add_argument("--max-tokens", type=int_at_least(ATTENTION_MIN_TOKENS), default=ESM2_MAX_TOKENS, metavar="N",
                     help=f"tokens per protein (default {ESM2_MAX_TOKENS}, the notebook's; at least "
                          f"{ATTENTION_MIN_TOKENS}: <cls> and 8 residues, the fewest with two pairs |i-j| > 5)")
    add_device_option(att)
    add_dtype_option(att)
    add_output_dir(att, "output folder")
    att.add_argument("--overwrite", action="store_true", help="discard an earlier run in DIR instead of resuming it")
    add_shard_option(att, " of the proteins")
    add_quiet_option(att)
    att.set_defaults(func=run_attention)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_attention(args: argparse.Namespace) -> int:
    from seqdance.analysis.attention_run import run_attention_analysis
    from seqdance.analysis.models import describe_source, load_analysis_model
    from seqdance.devices import model_dtype, resolve_device
    from seqdance.inference.sharding import local_rank, resolve_shard
    from seqdance.store import DynamicsStore

    shard = resolve_shard(args.shard)
    began = time.perf_counter()
    device = resolve_device(args.device, default="auto", local_rank=local_rank())
    from seqdance.model.hints import model_option

    with model_option("--model", "--model-select"):
        model = load_analysis_model(args.model, model_select=args.model_select, device=device,
                                    dtype=model_dtype(args.dtype))
    store = DynamicsStore.open(args.store, index=args.index)
    out = Path(args.output)
    report = run_attention_analysis(
        model, store, out, split=None if args.split == "all" else args.split, names=args.names,
        max_tokens=args.max_tokens, device=device, progress=not args.quiet, description=str(args.model),
        title=describe_source(args.model), shard=shard, overwrite=args.overwrite,
    )
    if report.merged:
        print((out / "summary.md").read_text())
    from seqdance.analysis.attention_report import left_out_note
    from seqdance.analysis.attention_run import selection_words, without_pair_targets

    left_out = without_pair_targets(store, None if args.split == "all" else args.split, args.names)
    if left_out:
        print("note: " + left_out_note(left_out, selection_words(None if args.split == "all" else args.split)),
              file=sys.stderr)
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{counted(report.n_computed, 'protein')} analysed, {report.n_done:,} already done, of "
          f"{report.n_owned:,}"
          + (f"; {counted(report.n_combined, 'protein x head row')} in {out / 'per_head.csv'}" if report.merged else "")
          + f" ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
    report_run(report, noun="protein", merged_what=str(out / "per_head.csv"), merge_target=out)
    return 0
