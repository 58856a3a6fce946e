"""``seqdance finetune``: fine-tune a head, LoRA adapters or the whole model on your own labels (docs/finetune.md).

Options given on the command line lay over ``--config ft.yaml``; ``--set key=value`` overrides any entry last, as
for ``seqdance train``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_device_option, add_output_dir, add_quiet_option, fraction, int_at_least
from seqdance.devices import PRECISIONS
from seqdance.finetuning.options import DYNAMICS_CHOICES, KEEP, METHODS, POOLINGS, SPLITS, TASKS
from seqdance.model.kinds import MODEL_SELECTS

#: command-line option (argparse dest) -> config key
_KEYS = {
    "labels": "labels", "task": "task", "target": "target", "models": "models", "model_select": "model_select",
    "methods": "methods", "with_dynamics": "with_dynamics", "dynamics_model": "dynamics_model",
    "classification": "classification", "pooling": "pooling", "wild_types": "wild_types",
    "reference_csv": "reference_csv", "sequences": "sequences", "max_rows": "max_rows", "split": "split",
    "folds": "folds", "epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr", "patience": "patience",
    "seed": "seed", "device": "device", "precision": "precision", "keep": "keep", "merge_lora": "merge_lora",
    "lora_rank": "lora.rank", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
    "lora_targets": "lora.target_modules", "lora_ffn": "lora.ffn", "layer_decay": "optim.layer_decay",
    "gradient_checkpointing": "gradient_checkpointing", "output": "output_dir", "cache": "cache_dir",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune on your own labels: a head, LoRA or the whole model; protein, residue or mutant tasks",
        description="Trains every --model x --method (x with/without dynamics inputs) on every fold, beside ridge "
        "baselines (one-hot for mutants, frozen embeddings, length, composition), and writes OUTDIR/metrics.csv, "
        "predictions.csv, summary.md, figures and OUTDIR/model (loads with --model). See docs/finetune.md.",
    )
    p.add_argument("--config", type=Path, default=None, metavar="CONFIG.yaml",
                   help="YAML with any of the options below (see docs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set optim.lr=3e-4 --set lora.rank=16 (repeatable)")
    p.add_argument("--labels", action="append", default=None, metavar="LABELS.csv|DIR",
                   help="label table (CSV); mutant tasks: assay CSVs or a ProteinGym-style folder (repeatable)")
    p.add_argument("--task", choices=TASKS, default=None, help="protein (default), residue or mutant")
    p.add_argument("--target", default=None, metavar="COLUMN", help="label column (mutants: DMS_score or score)")
    p.add_argument("--model", dest="models", action="append", default=None, metavar="[NAME=]SOURCE",
                   help="base model (repeatable): SeqDance/ESMDance source or a plain ESM2 (facebook/esm2_* id or "
                   "folder), the baseline in the same run")
    p.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                   help="model kind of training checkpoints that do not record it")
    p.add_argument("--method", dest="methods", action="append", choices=METHODS, default=None,
                   help="head (frozen encoder, cached), lora (PEFT adapters) or full (repeatable; default head)")
    p.add_argument("--with-dynamics", nargs="?", const="yes", choices=DYNAMICS_CHOICES, default=None,
                   help="feed the base model's predicted dynamics to the head; 'both' runs with and without")
    p.add_argument("--dynamics-model", default=None, metavar="SOURCE",
                   help="the dynamics model that supplies them for a plain ESM2 base")
    p.add_argument("--classification", action="store_true", default=None, help="the target holds class names")
    p.add_argument("--pooling", choices=POOLINGS, default=None, help="protein tasks: mean (default) or attention")
    p.add_argument("--wild-types", default=None, metavar="FASTA", help="mutant tasks: wild types (id = assay name)")
    p.add_argument("--reference-csv", default=None, metavar="CSV", help="mutant tasks: ProteinGym reference file")
    p.add_argument("--sequences", default=None, metavar="FASTA", help="residue tasks with a long table")
    p.add_argument("--max-rows", type=int_at_least(10), default=None, metavar="N",
                   help="mutant tasks: a seeded subset of at most N mutants per assay")
    p.add_argument("--split", default=None, metavar="SCHEME",
                   help=f"one of {', '.join(SPLITS)}; mutant tasks may list several, comma-separated")
    p.add_argument("--folds", type=int_at_least(2), default=None, metavar="N",
                   help="folds of kfold / identity (default 5)")
    p.add_argument("--epochs", type=int_at_least(1), default=None, metavar="N", help="most epochs (default 20)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N")
    p.add_argument("--lr", type=float, default=None, metavar="F",
                   help="peak learning rate (default: head/lora 1e-3, full 5e-5)")
    p.add_argument("--patience", type=int_at_least(1), default=None, metavar="N",
                   help="early-stopping patience (default 5)")
    p.add_argument("--seed", type=int, default=None, metavar="N")
    add_device_option(p, default=None)
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="auto: bf16 autocast on GPUs, fp32 on CPU")
    p.add_argument("--keep", choices=KEEP, default=None,
                   help="OUTDIR/model: refit the best combination on all rows (default), its best fold, or none")
    p.add_argument("--merge-lora", action="store_true", default=None, help="save LoRA merged into the encoder")
    p.add_argument("--lora-rank", type=int_at_least(1), default=None, metavar="N")
    p.add_argument("--lora-alpha", type=float, default=None, metavar="F")
    p.add_argument("--lora-dropout", type=fraction, default=None, metavar="F")
    p.add_argument("--lora-targets", nargs="+", default=None, metavar="MODULE",
                   help="encoder modules to adapt (default: query key value attention.output.dense)")
    p.add_argument("--lora-ffn", action="store_true", default=None, help="also adapt the feed-forward layers")
    p.add_argument("--layer-decay", type=float, default=None, metavar="F", help="full: layer-wise LR decay, e.g. 0.9")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute encoder activations in backward (less memory, more time)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=None)
    p.add_argument("--cache", default=None, metavar="DIR", help="frozen-feature cache (default OUTDIR/cache)")
    add_output_dir(p, "output folder (default runs/finetune)", required=False, default=None, type=str)
    p.add_argument("--resume", action="store_true", help="continue the run in OUTDIR (same inputs and options)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an OUTDIR that holds a run")
    add_quiet_option(p)
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from seqdance.finetuning.config import FinetuneConfig
    from seqdance.finetuning.run import finetune

    given = {key: getattr(args, dest) for dest, key in _KEYS.items() if getattr(args, dest) is not None}
    if args.baselines is False:
        given["baselines"] = False
    if args.quiet:
        given["progress"] = False
    config = FinetuneConfig.from_yaml(args.config, args.overrides, base=given)

    def report(message: str) -> None:
        print(message, file=sys.stderr)

    from seqdance.model.hints import model_option

    with model_option("--model", "--model-select"):
        result = finetune(config, resume=args.resume, overwrite=args.overwrite, report=report)
    import os

    if os.environ.get("RANK", "0") == "0":
        print((result.output_dir / "summary.md").read_text())
        print(f"wrote {result.output_dir}/metrics.csv, predictions.csv, summary.md and figures"
              + (f"; model in {result.output_dir / 'model'}" if result.model is not None else ""), file=sys.stderr)
    return 0
