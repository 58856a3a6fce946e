"""Which shard of a run this process computes: ``--shard i/N``, parsed in one place for every command.

A foundation module (no numeric library, no seqdance layer above ``errors``), so that ``dataset build`` (the store
layer) and the inference runs (``predict``, ``embed``, ``score``, ``benchmark-dms``, ``analyze attention``) read
the option the same way. Shards are 0-based, as SLURM's ``$SLURM_ARRAY_TASK_ID``. The number of shards is capped
at :data:`MAX_SHARDS`: a run is cut into at most that many processes, and a larger number is a typo that would
otherwise cost memory or time before any work starts.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from seqdance.errors import SeqdanceError

#: The most shards a run may be cut into (SLURM's largest job array holds 4,000,001 tasks; a million processes
#: each computing a sliver of one run is already far past any useful split).
MAX_SHARDS = 1_000_000
_SPEC = re.compile(r"\s*([+-]?\d{1,30})\s*/\s*([+-]?\d{1,30})\s*")


class ShardError(SeqdanceError, ValueError):
    """A shard specification is malformed, or the shards of a run do not fit together."""


class Shard(NamedTuple):
    """Shard ``index`` (0-based) of ``count``; a tuple, so ``i, n = shard`` works."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/N"`` -> :class:`Shard` with ``0 <= i < N <= MAX_SHARDS``; anything else is a :class:`ShardError`
    naming the option and what is wrong (one line)."""
    match = _SPEC.fullmatch(str(text))
    if match is None:
        raise ShardError(f"--shard {text!r}: write it i/N, the 0-based shard index and the number of shards (e.g. 0/8)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ShardError(f"--shard {text}: the number of shards must be at least 1, got {count}")
    if count > MAX_SHARDS:
        raise ShardError(f"--shard {text}: the number of shards must be at most {MAX_SHARDS:,}, got {count:,}")
    if not 0 <= index < count:
        raise ShardError(f"--shard {text}: the shard index is 0-based and must lie in 0..{count - 1}, got {index}")
    return Shard(index, count)
