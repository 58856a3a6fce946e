"""``seqdance`` entry point: collects the sub-commands registered by the command modules."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Callable

from seqdance.cli.options import UsageError
from seqdance.errors import SeqdanceError
from seqdance.extras import COMMAND_EXTRAS, check_command, command_name, from_module_not_found

#: Command modules, each with ``register(subparsers)`` adding its sub-command(s) and setting ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "seqdance.cli.predict",  # predict
    "seqdance.cli.embed",  # embed
    "seqdance.cli.structure_map",  # map
    "seqdance.cli.score",  # score
    "seqdance.cli.compare",  # compare (how each variant changes the dynamics)
    "seqdance.cli.benchmark_dms",  # benchmark-dms
    "seqdance.cli.compare_dms",  # compare-dms (paired comparison of score columns on ProteinGym assays)
    "seqdance.cli.merge",  # merge (the shards of a sharded predict, embed, score, compare, benchmark-dms, attention)
    "seqdance.cli.features",  # features md, features nma
    "seqdance.cli.dataset",  # dataset build|merge|split|check|homology
    "seqdance.cli.train",  # train, evaluate, loss-weights
    "seqdance.cli.analyze",  # analyze attention
    "seqdance.cli.probe",  # probe
    "seqdance.cli.report",  # report (an HTML page of a run)
    "seqdance.cli.serve",  # serve (the local web app)
    "seqdance.cli.finetune",  # finetune
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


#: Exit status of a problem with the user's input (a file, an id, a value), reported on one line.
USER_ERROR_EXIT_CODE = 1
#: Exit status of a command-line usage error: argparse's (an unknown or missing option, a value of the wrong form
#: or out of range, an output name whose extension does not match what is written), and a :class:`UsageError`.
USAGE_EXIT_CODE = 2
#: Exit status of a run that stopped on an unexpected exception (a bug in seqdance): EX_SOFTWARE of sysexits.h,
#: distinct from 1 (a user error, reported on one line) and 2 (a command-line usage error, from argparse).
BUG_EXIT_CODE = 70
#: Exit status of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED_EXIT_CODE = 130
BUG_NOTE = "this is a bug in seqdance, please report it (with the command line and the traceback above)"


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, prog: str) -> int:
    """Run one command: one line for user errors (SeqdanceError, OSError, an optional package that is not
    installed), a traceback plus a bug note for anything else. ``-vv`` shows the traceback of user errors too.

    The packages a command line needs beyond the core install (``seqdance.extras``) are checked before it starts.
    """
    try:
        check_command(args)
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except UsageError as exc:  # an option that does not fit, found after parsing: a usage error as argparse's
        return _user_error(exc, args, prog, status=USAGE_EXIT_CODE)
    except (SeqdanceError, OSError) as exc:  # the user's to fix: one clear line, no traceback
        return _user_error(exc, args, prog)
    except ModuleNotFoundError as exc:  # an optional package: name the extra that installs it
        command = command_name(args)
        missing = from_module_not_found(exc, command or prog, COMMAND_EXTRAS.get(command, (None,))[0])
        return _bug(prog) if missing is None else _user_error(missing, args, prog)
    except Exception:  # a bug: the one place that catches everything, to print the traceback and the note
        return _bug(prog)


def _user_error(exc: BaseException, args: argparse.Namespace, prog: str, status: int = USER_ERROR_EXIT_CODE) -> int:
    if getattr(args, "verbose", 0) >= 2:
        traceback.print_exc()
    plain_os_error = isinstance(exc, OSError) and not isinstance(exc, SeqdanceError)
    message = " ".join(str(exc).split("\n")[0].split()) if plain_os_error else str(exc)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def _bug(prog: str) -> int:
    traceback.print_exc()
    print(f"{prog}: {BUG_NOTE}", file=sys.stderr)
    return BUG_EXIT_CODE


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
    args.command_argv = list(sys.argv[1:] if argv is None else argv)  # what a report names as its command
    configure_logging(args.verbose, bool(getattr(args, "quiet", False)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args, f"seqdance {command_name(args)}")  # "seqdance features md", not "features"


if __name__ == "__main__":
    sys.exit(main())
