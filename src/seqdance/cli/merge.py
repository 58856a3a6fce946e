"""``seqdance merge``: check and combine the shards of a sharded predict, embed, score, compare, benchmark-dms or
analyze attention run.

The shard that finishes last already does this; the command checks a run and redoes the combination on demand
(after a failed shard was rerun, or to confirm that every shard and every output belongs to the same run).
A new sharded command joins by adding its :class:`~seqdance.inference.sharded_run.RunLayout` to :func:`layouts`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqdance.cli.options import add_quiet_option
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = subparsers.add_parser(
        "merge",
        help="combine the shards of a sharded run (predict, embed, score, compare, benchmark-dms, analyze attention)",
        description="Checks that every shard of the run in OUTPUT finished and belongs to the same run (inputs, "
        "model, options) and that every output is the run's own (its sequence, model fingerprint and options, and "
        "a readable file of the right size), then writes the combined outputs: residues.csv (predict), OUT.h5 "
        "(embed), scores.csv (score), summary.csv (compare), per_assay.csv and summary.csv (benchmark-dms), "
        "per_head.csv and the report "
        "(analyze attention).",
    )
    merge.add_argument("output", type=Path, help="the -o of the sharded run: predict/score/compare/benchmark-dms/"
                       "attention folder or embed OUT.h5")
    add_quiet_option(merge)
    merge.set_defaults(func=run_merge)


def layouts() -> list:
    """The layout of every sharded command (``seqdance merge`` finds the run's by its manifests)."""
    from seqdance.analysis.attention_run import AttentionLayout
    from seqdance.inference.runs import EmbeddingLayout, PredictionLayout
    from seqdance.scoring.compare_run import CompareLayout
    from seqdance.scoring.dms import BenchmarkLayout
    from seqdance.scoring.proteins import ScoreLayout

    return [PredictionLayout, EmbeddingLayout, ScoreLayout, CompareLayout, BenchmarkLayout, AttentionLayout]


def run_merge(args: argparse.Namespace) -> int:
    from seqdance.inference.sharded_run import find_run, merge_run

    out: Path = args.output
    result = merge_run(find_run(out, layouts()), out)
    what = {"predict": f"{out / 'residues.csv'} ({counted(result.n_combined, 'residue')})",
            "embed": f"{counted(result.n_combined, 'entry')} in {out}",
            "score": f"{out / 'scores.csv'} ({counted(result.n_combined, 'variant')})",
            "compare": f"{out / 'summary.csv'} ({counted(result.n_combined, 'variant')})",
            "benchmark-dms": f"{counted(result.n_items - len(result.failures), 'assay')} evaluated, "
                             f"{len(result.failures)} failed; tables in {out}",
            "analyze-attention": f"{out / 'per_head.csv'} ({counted(result.n_combined, 'protein x head row')}) and "
                                 "the report"}
    print(f"{counted(result.n_shards, 'shard')} of {result.command} merged: {what.get(result.command, out)}")
    return 1 if result.failures else 0
