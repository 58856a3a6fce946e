"""Argument types that check ranges when the command line is parsed (a nonsensical number is a usage error
naming the option, before any work starts)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
