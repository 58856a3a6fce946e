"""``seqdance`` entry point: collects the sub-commands registered by the command modules."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Command modules, each with ``register(subparsers)`` adding its sub-command(s) and setting ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "seqdance.cli.predict",  # predict, embed
    "seqdance.cli.structure_map",  # map
    "seqdance.cli.score",  # score, benchmark-dms
    "seqdance.cli.features",  # features md, features nma
    "seqdance.cli.dataset",  # dataset build|merge|split|check|homology
    "seqdance.cli.train",  # train, evaluate, loss-weights
)


def build_parser() -> argparse.ArgumentParser:
    from seqdance import __version__

    parser = argparse.ArgumentParser(
        prog="seqdance",
        description="Protein dynamics from sequence: SeqDance / ESMDance features, data, models and scoring.",
    )
    parser.add_argument("--version", action="version", version=f"seqdance {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:  # user errors: one clear line, no traceback
        if args.verbose >= 2:
            raise
        print(f"seqdance {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
