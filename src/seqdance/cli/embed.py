"""``seqdance embed``: mean-pooled (and per-residue) embeddings of every sequence of a FASTA file, to HDF5.

The embeddings come from :mod:`seqdance.inference.embeddings`, the path ``probe`` uses too; the run is resumable
and shardable like ``predict`` (:mod:`seqdance.inference.runs`).
"""

from __future__ import annotations

import argparse
import sys

from seqdance.cli.options import add_output_file
from seqdance.cli.predict import add_fasta_run_options, batch_tokens, load, read_inputs
from seqdance.cli.run_options import model_name, report_run
from seqdance.wording import counted


def register(subparsers: argparse._SubParsersAction) -> None:
    emb = subparsers.add_parser(
        "embed",
        help="mean-pooled (and per-residue) embeddings of every sequence of a FASTA file, to HDF5",
        description="Writes OUT.h5 with /mean/<id> (mean over residues), /mean_all/<id> (mean over every token, "
        "<cls>/<eos> included: the reference notebook's pooling, what 'probe' uses by default), /per_residue/<id> "
        "with --per-residue, and an /index.",
    )
    add_fasta_run_options(emb)
    add_output_file(emb, "hdf5", "HDF5 file to write")
    emb.add_argument("--per-residue", action="store_true", help="also store per-residue embeddings (L, d)")
    emb.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from seqdance.inference.prediction_io import unique_stems
    from seqdance.inference.runs import run_embeddings
    from seqdance.inference.sharding import resolve_shard

    shard = resolve_shard(args.shard)
    records = read_inputs(args)
    unique_stems(records.ids)
    report = run_embeddings(load(args), records.ids, None, args.output, model_name=model_name(args.model),
                            per_residue=args.per_residue, max_tokens_per_batch=batch_tokens(args), shard=shard,
                            overwrite=args.overwrite, progress=False if args.quiet else "embed",
                            encoded=records.encoded)
    scope = f"shard {shard.label}: " if shard else ""
    print(f"{scope}{report.n_computed} embedded, {report.n_done} already done"
          + (f"; {counted(report.n_combined, 'entry')} in {args.output}" if report.merged else ""), file=sys.stderr)
    report_run(report, noun="sequence", merged_what=str(args.output), merge_target=args.output)
    return 0
