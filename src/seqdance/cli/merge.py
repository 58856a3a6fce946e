"""``seqdance merge``: combine the shards of a sharded predict, embed, score or benchmark-dms run.

The shard that finishes last already does this; the command checks a run and redoes the combination on demand
(after a failed shard was rerun, or to confirm that every shard belongs to the same run).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    merge = subparsers.add_parser(
        "merge",
        help="combine the shards of a sharded predict / embed / score / benchmark-dms run",
        description="Checks that every shard of the run in OUTPUT finished and belongs to the same run (inputs, "
        "model, options), then writes the combined outputs: residues.csv (predict), OUT.h5 (embed), scores.csv "
        "(score), per_assay.csv and summary.csv (benchmark-dms).",
    )
    merge.add_argument("output", type=Path,
                       help="the -o of the sharded run: predict/score/benchmark-dms folder or embed OUT.h5")
    merge.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from seqdance.inference.runs import SHARDS_DIR, embedding_shards_folder
    from seqdance.inference.sharding import ShardError, read_manifests

    out: Path = args.output
    folders = [out / SHARDS_DIR, embedding_shards_folder(out)]
    found = [(folder, read_manifests(folder)) for folder in folders]
    found = [(folder, manifests) for folder, manifests in found if manifests]
    if not found:
        raise ShardError(f"{out}: no shard manifests in {folders[0]} or {folders[1]} (run the shards with --shard "
                         "i/N first)")
    folder, manifests = found[0]
    command = manifests[0].get("command")
    if command == "predict":
        from seqdance.inference.runs import merge_predictions

        rows = merge_predictions(out)
        print(f"{len(manifests)} shard(s) of predict merged: {out / 'residues.csv'} ({rows} residues)")
    elif command == "embed":
        from seqdance.inference.runs import merge_embeddings

        total = merge_embeddings(out)
        print(f"{len(manifests)} shard(s) of embed merged: {total} entries in {out}")
    elif command == "score":
        from seqdance.scoring.proteins import COMBINED_CSV, merge_protein_scores

        rows = merge_protein_scores(out)
        print(f"{len(manifests)} shard(s) of score merged: {out / COMBINED_CSV} ({rows} variants)")
    elif command == "benchmark-dms":
        from seqdance.scoring.dms import merge_benchmark

        merged = merge_benchmark(out)
        evaluated = merged.per_assay["assay"].nunique() if len(merged.per_assay) else 0
        print(f"{len(manifests)} shard(s) of benchmark-dms merged: {evaluated} assay(s) evaluated, "
              f"{len(merged.failures)} failed; tables in {out}")
        return 1 if len(merged.failures) else 0
    else:
        raise ShardError(f"{folder}: manifests of an unknown command {command!r}")
    return 0
