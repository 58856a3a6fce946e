"""The command line's one vocabulary: argument types that check ranges and output names when the command line is
parsed (a nonsensical number or an output name whose extension does not match what is written is a usage error
naming the option, before any work starts), the options every command spells the same way (``-o/--output``,
``--device``, ``--dtype``, ``-q/--quiet``, their metavars), deprecated option names, and the flags of an options
class. ``tests/test_cli_vocabulary.py`` checks every parser against it."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seqdance.devices import DEVICE_HELP, DTYPES, dtype_name
from seqdance.errors import InputError

#: What each kind of single-file output is named: the suffixes of what the command writes.
OUTPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv",),
    "json": (".json",),
    "hdf5": (".h5", ".hdf5"),
    "npz": (".npz",),
    "html": (".html", ".htm"),
    "structure": (".pdb", ".cif"),
    "figure": (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".eps", ".ps"),
}
#: Metavars of the options several commands share (one spelling; checked over every parser by a test).
OUTPUT_DIR = "OUTDIR"
SOURCE = "SOURCE"
STORE = "STORE.h5"
QUIET_HELP = "no progress bars, and third-party libraries' messages kept to errors"


def output_suffix_problem(path: str | Path, kind: str) -> str | None:
    """Why ``path`` is not a name for an output of ``kind`` (None when it is)."""
    suffixes = OUTPUT_SUFFIXES[kind]
    if Path(path).suffix.lower() in suffixes:
        return None
    given = Path(path).suffix or "no extension"
    return (f"{path}: this output is written as {kind.upper() if kind not in ('figure', 'structure') else 'a ' + kind}"
            f", so its name must end in {' or '.join(suffixes)} (it has {given})")


def output_file(kind: str) -> Callable[[str], Path | str]:
    """A ``Path`` argument type for a single-file output of ``kind`` (:data:`OUTPUT_SUFFIXES`): an extension that
    does not match what the command writes (``-o scan.png`` for a CSV) is a usage error."""

    def parse(text: str) -> Path | str:
        if text == "":  # an option's const (``--report`` without a name: the default name)
            return text
        problem = output_suffix_problem(text, kind)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return Path(text)

    parse.__name__ = f"{kind} file name"
    parse.suffixes = OUTPUT_SUFFIXES[kind]  # type: ignore[attr-defined]
    return parse


class UsageError(InputError):
    """An option value that does not fit the command, found after parsing (an output name that fits only some
    inputs): the CLI ends with status 2, as for argparse's usage errors."""


def check_output_file(path: str | Path, kind: str, option: str = "-o") -> Path:
    """``path`` as a single-file output of ``kind``, or a :class:`UsageError` naming the option."""
    problem = output_suffix_problem(path, kind)
    if problem is not None:
        raise UsageError(f"{option} {problem}")
    return Path(path)


def add_output_dir(parser: argparse.ArgumentParser | argparse._ActionsContainer, help: str, *,
                   required: bool = True, **kwargs: Any) -> argparse.Action:
    """``-o/--output OUTDIR``: an output folder."""
    kwargs.setdefault("type", Path)
    return parser.add_argument("-o", "--output", required=required, metavar=OUTPUT_DIR, help=help, **kwargs)


def add_output_file(parser: argparse.ArgumentParser | argparse._ActionsContainer, kind: str, help: str, *,
                    required: bool = True, **kwargs: Any) -> argparse.Action:
    """``-o/--output OUT.<ext>``: a single file of ``kind`` (its extension checked while parsing)."""
    metavar = "|".join(f"OUT{suffix}" for suffix in OUTPUT_SUFFIXES[kind][:2])
    return parser.add_argument("-o", "--output", required=required, type=output_file(kind), metavar=metavar,
                               help=help, **kwargs)


def add_device_option(parser: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    """``--device DEVICE`` with the one help text (``default=None``: a config file's value stands unless given)."""
    parser.add_argument("--device", default=default, metavar="DEVICE", help=DEVICE_HELP)


def dtype_argument(text: str) -> str:
    """A ``--dtype`` argument type: float32, bfloat16, float16 (or fp32, bf16, fp16)."""
    try:
        return dtype_name(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


dtype_argument.__name__ = "dtype"
DTYPE_HELP = (f"the model's weights and arithmetic: {', '.join(DTYPES)} (default float32, exact; bfloat16 / float16 "
              "are faster on GPUs and use half the memory, at the deviations docs/predict.md#precision lists)")


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    """``--dtype float32|bfloat16|float16`` of every command that runs a model."""
    parser.add_argument("--dtype", type=dtype_argument, default="float32", metavar="|".join(DTYPES),
                        help=DTYPE_HELP)


def add_quiet_option(parser: argparse.ArgumentParser, help: str = QUIET_HELP, *,
                     deprecated: tuple[str, ...] = ()) -> None:
    """``-q/--quiet`` (every command has it); ``deprecated``: old names kept for a release, with a warning."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)
    for old in deprecated:
        deprecated_alias(parser, old, "--quiet", "quiet", takes_value=False)


def int_at_least(minimum: int, *, maximum: int | None = None) -> Callable[[str], int]:
    """An ``int`` argument type accepting ``minimum`` ≤ value (≤ ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def fraction(text: str) -> float:
    """A ``float`` argument type accepting values in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def finite_number(text: str) -> float:
    """A ``float`` argument type accepting any finite value (``nan``, ``inf`` are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


finite_number.__name__ = "number"


def number_between(minimum: float, maximum: float) -> Callable[[str], float]:
    """A finite ``float`` argument type accepting ``minimum`` ≤ value ≤ ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"must lie in [{minimum:g}, {maximum:g}], got {text}")
        return value

    parse.__name__ = "number"
    return parse


class DeprecatedAlias(argparse.Action):
    """An option's old name: still accepted, with a one-line warning naming the new one."""

    def __init__(self, option_strings: list[str], dest: str, canonical: str = "", takes_value: bool = True,
                 **kwargs: Any) -> None:
        self.canonical = canonical
        self.takes_value = takes_value
        if not takes_value:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed; use {self.canonical}",
              file=sys.stderr)
        setattr(namespace, self.dest, values if self.takes_value else True)


def deprecated_alias(parser: argparse.ArgumentParser | argparse._ActionsContainer, old: str, canonical: str,
                     dest: str, **kwargs: Any) -> None:
    """Accept ``old`` as a hidden, warning alias of the option ``canonical`` (same ``dest`` and type)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, canonical=canonical, help=argparse.SUPPRESS,
                        **kwargs)


def add_option_arguments(parser: argparse.ArgumentParser, options: Any, names: Iterable[str] | None = None) -> None:
    """The flags of an options class (:class:`seqdance.features.options.MdOptions`, ``NmaOptions``), derived from
    its one definition: help, choices, ranges (usage errors when out of range), defaults, deprecated aliases.
    ``names``: only these options (default: every option that has a flag)."""
    wanted = None if names is None else set(names)
    for name, default, info in options.option_fields():
        if not info.flags or (wanted is not None and name not in wanted):
            continue
        if info.kind == "bool":
            parser.add_argument(*info.flags, dest=name, action="store_true", help=info.help)
            for old in info.deprecated_flags:
                deprecated_alias(parser, old, info.flags[0], name, takes_value=False)
            continue
        kwargs: dict[str, Any] = {"dest": name,
                                  "default": info.cli_default if info.cli_default is not None else default}
        if info.kind == "int":
            low = 0 if info.minimum is None else int(info.minimum)
            kwargs["type"] = int_at_least(low, maximum=None if info.maximum is None else int(info.maximum))
        elif info.kind == "float" and info.minimum is not None and info.maximum is not None:
            kwargs["type"] = number_between(info.minimum, info.maximum)
        if info.choices is not None:
            kwargs["choices"] = info.choices
        metavar = info.metavar or {"int": "N", "float": "F", "chains": "A[,B]"}.get(info.kind)
        if metavar is not None and info.choices is None:
            kwargs["metavar"] = metavar
        parser.add_argument(*info.flags, help=info.help, **kwargs)
        for old in info.deprecated_flags:
            deprecated_alias(parser, old, info.flags[0], name, **{k: v for k, v in kwargs.items()
                                                                  if k in ("type", "choices", "metavar")})


def shard_spec(text: str):
    """A ``--shard i/N`` argument type (:func:`seqdance.shards.parse_shard`): a malformed or out-of-range shard is
    a usage error (exit status 2) naming the option."""
    from seqdance.shards import ShardError, parse_shard

    try:
        return parse_shard(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--shard {text}: ").removeprefix(
            f"--shard {text!r}: ")) from None


shard_spec.__name__ = "shard"
