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
    "seqdance.cli.merge",  # merge (the shards of a sharded predict / embed / score / benchmark-dms run)
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


#: Libraries whose log messages ``-q`` silences (errors still show).
THIRD_PARTY_LOGGERS: tuple[str, ...] = (
    "huggingface_hub", "MDAnalysis", "mdtraj", "distributed", "numba", "h5py", "matplotlib", "httpx", "urllib3",
)


def configure_logging(verbose: int, quiet: bool) -> None:
    """One line per message, each printed once; ``quiet`` keeps third-party libraries to errors and their Python
    warnings out (seqdance's own warnings still show)."""
    import warnings

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), format="%(levelname)s %(name)s: %(message)s")
    # huggingface_hub prints through its own handler and also propagates to the root logger: print once
    logging.getLogger("huggingface_hub").propagate = False
    if quiet:
        for name in THIRD_PARTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"^(?!seqdance)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, bool(getattr(args, "quiet", False)))
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
