"""Argument types that check ranges when the command line is parsed (a nonsensical number is a usage error
naming the option, before any work starts), deprecated option names, and the flags of an options class."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any


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
        if info.metavar is not None:
            kwargs["metavar"] = info.metavar
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
