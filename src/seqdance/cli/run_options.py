"""What the run commands (predict, embed, score, benchmark-dms, analyze attention) share on the command line:
the ``--shard`` option, how outputs name the model, and the lines that end a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import shard_spec
from seqdance.wording import counted

SHARD_HELP = ("compute shard i (0-based) of N, balanced by cost (SLURM job arrays); under torchrun each rank takes "
              "its own shard; see docs/large_runs.md")


def add_shard_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--shard", metavar="i/N", type=shard_spec, default=None,
                        help=SHARD_HELP.replace("compute shard i", f"compute shard i{what}"))


def model_name(source: str) -> str:
    """How outputs record the model: the absolute path of a local model, else the hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def report_run(report, *, noun: str, merged_what: str, merge_target: Path | str) -> None:
    """The end-of-run lines on stderr: a shard that received no work and why, the throughput (``noun``: what was
    computed, singular), and for a shard whether the combined output was written."""
    shard = report.shard
    if report.idle:
        print(report.idle_reason(), file=sys.stderr)
    if report.throughput.sequences:
        print(f"computed {report.throughput.summary(noun)}", file=sys.stderr)
    if shard is None:
        return
    if report.merged:
        print(f"shard {shard.label}: {'all ' if shard.count > 1 else ''}{counted(shard.count, 'shard')} finished; "
              f"{merged_what} written",
              file=sys.stderr)
    else:
        print(f"shard {shard.label}: done; the last shard to finish writes {merged_what} "
              f"(or run: seqdance merge {merge_target})", file=sys.stderr)
