"""Shards of a large inference run: which shard this process is, a token-balanced partition, shard manifests.

A run over many sequences (``predict``, ``embed``, ``score``, ``benchmark-dms``) can be cut into N shards run by
N independent processes: the tasks of a SLURM job array (``--shard i/N``, 0-based like ``dataset build``) or the
ranks of ``torchrun`` (RANK / WORLD_SIZE, no process group). Both together give shard ``i*W + rank`` of ``N*W``.

**Partition.** The run is first cut into work units (a batch of sequences, one long sequence, one protein, one
assay) exactly as a single process would cut it, so that every value is computed in the same batch whatever N
is. The units are then dealt out by their cost, greedy longest-first into the lightest shard (ties by the unit's
key, then by shard index), which is deterministic and keeps the shards' loads within one unit of each other.
A unit's cost is its padded token count with a quadratic term for attention (and the pair head), calibrated on
the 35M model's CPU timings in docs/predict.md: ``t * (1 + t / K)`` per input of ``t`` tokens with ``K = 65``
when pair outputs or attention maps are computed and ``K = 1680`` for the residue-only path.

**Manifests.** Each shard writes ``shard-i-of-N.json`` into the run's manifest folder (``OUTDIR/shards/``,
``OUT.h5.shards/``): the run key (a hash of
everything that must agree between the shards: the inputs, the model fingerprint, the options, N), the items it
owns (input index and id) and whether it finished. The shard that finishes last sees every manifest of its run
complete and writes the combined outputs; ``seqdance merge`` does the same on demand and names, in one line,
a shard that is missing, unfinished, or belongs to another run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdance.errors import SeqdanceError
from seqdance.io_utils import atomic_path

#: Quadratic-cost scale (tokens) of one input: cost = t * (1 + t / K).
PAIR_COST_TOKENS = 65.0
RESIDUE_COST_TOKENS = 1680.0
_MANIFEST_RE = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")


class ShardError(SeqdanceError, ValueError):
    """A shard specification is malformed, or the shards of a run do not fit together."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/N"`` -> :class:`Shard`; ``0 <= i < N``."""
    match = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", str(text))
    if match is None:
        raise ShardError(f"--shard {text!r}: write it i/N, the 0-based shard index and the number of shards (e.g. 0/8)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ShardError(f"--shard {text}: the number of shards must be at least 1, got {count}")
    if not 0 <= index < count:
        raise ShardError(f"--shard {text}: the shard index is 0-based and must lie in 0..{count - 1}, got {index}")
    return Shard(index, count)


def launcher_shard(env: Mapping[str, str] | None = None) -> Shard | None:
    """This process's shard from torchrun's RANK / WORLD_SIZE (None when not launched by torchrun)."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except ValueError:
        raise ShardError(f"RANK={env['RANK']!r} / WORLD_SIZE={env['WORLD_SIZE']!r} are not integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ShardError(f"RANK={rank} does not lie in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return Shard(rank, world)


def local_rank(env: Mapping[str, str] | None = None) -> int:
    """torchrun's LOCAL_RANK (0 when absent): which GPU of the node this process drives."""
    env = os.environ if env is None else env
    return int(env.get("LOCAL_RANK", "0") or 0)


def resolve_shard(text: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of this process: ``--shard i/N`` refined by torchrun's rank, or the rank alone, or None."""
    given = parse_shard(text) if text is not None else None
    launched = launcher_shard(env)
    if launched is None or launched.count == 1:
        return given
    if given is None:
        return launched
    return Shard(given.index * launched.count + launched.index, given.count * launched.count)


def input_cost(tokens: int, *, quadratic: bool) -> float:
    """Estimated cost of one model input of ``tokens`` tokens (see the module docstring)."""
    scale = PAIR_COST_TOKENS if quadratic else RESIDUE_COST_TOKENS
    return float(tokens) * (1.0 + tokens / scale)


def partition(costs: Sequence[float], keys: Sequence[str], n_shards: int) -> list[list[int]]:
    """Unit indices of each of ``n_shards`` shards: greedy longest-first into the lightest shard.

    Deterministic: units are taken by decreasing cost, ties by ``keys``; a unit goes to the shard with the
    smallest load so far, ties to the lowest shard index. Each shard's list is in increasing unit order.
    """
    if n_shards < 1:
        raise ShardError(f"the number of shards must be at least 1, got {n_shards}")
    if len(costs) != len(keys):
        raise ValueError(f"got {len(costs)} costs for {len(keys)} keys")
    order = sorted(range(len(costs)), key=lambda u: (-float(costs[u]), str(keys[u]), u))
    loads = [0.0] * n_shards
    owned: list[list[int]] = [[] for _ in range(n_shards)]
    for unit in order:
        lightest = min(range(n_shards), key=lambda s: (loads[s], s))
        loads[lightest] += float(costs[unit])
        owned[lightest].append(unit)
    return [sorted(units) for units in owned]


def content_key(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``: the identity of a run or of one record's output."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def records_digest(items: Sequence[tuple[str, str]]) -> str:
    """Hash of an ordered list of (id, sequence) pairs (the inputs of a run)."""
    digest = hashlib.sha256()
    for seq_id, sequence in items:
        digest.update(seq_id.encode("utf-8") + b"\0" + sequence.encode("utf-8") + b"\n")
    return digest.hexdigest()


def manifest_path(folder: str | os.PathLike[str], shard: Shard) -> Path:
    return Path(folder) / f"{shard.name}.json"


def write_manifest(
    folder: str | os.PathLike[str],
    shard: Shard,
    *,
    command: str,
    run_key: str,
    run: Mapping[str, Any],
    items: Sequence[tuple[int, str]],
    n_items: int,
    complete: bool,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write (atomically) the manifest of one shard: its run, the items it owns and whether it finished."""
    path = manifest_path(folder, shard)
    data = {
        "command": command,
        "run_key": run_key,
        "run": dict(run),
        "shard": shard.index,
        "n_shards": shard.count,
        "n_items": n_items,
        "items": [[int(i), str(name)] for i, name in items],
        "complete": bool(complete),
        **dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def read_manifests(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every shard manifest in ``folder`` (each with its ``path``), sorted by shard count and index."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob("shard-*-of-*.json")) if folder.is_dir() else []:
        if not _MANIFEST_RE.match(path.name):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ShardError(f"{path}: unreadable shard manifest ({exc}); rerun that shard") from exc
        data["path"] = str(path)
        found.append(data)
    return sorted(found, key=lambda d: (int(d.get("n_shards", 0)), int(d.get("shard", 0))))


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(keys) or "run key"


def complete_run(folder: str | os.PathLike[str], command: str | None = None) -> list[dict[str, Any]]:
    """The manifests of the one finished run in ``folder``, in shard order; a ShardError names what is wrong.

    Wrong: no manifests; manifests of more than one run (another model, other options or inputs, another N);
    a shard missing or unfinished; items not covering the inputs exactly once.
    """
    manifests = read_manifests(folder)
    where = Path(folder)
    if not manifests:
        raise ShardError(f"{where}: no shard manifests (run the shards with --shard i/N first)")
    if command is not None:
        other = [m for m in manifests if m.get("command") != command]
        if other:
            raise ShardError(f"{other[0]['path']} is a manifest of '{other[0].get('command')}', not '{command}'")
    first = manifests[0]
    for m in manifests[1:]:
        if m.get("run_key") != first.get("run_key"):
            raise ShardError(
                f"{where} mixes shards of different runs: {Path(m['path']).name} differs from "
                f"{Path(first['path']).name} in {_differences(first.get('run', {}), m.get('run', {}))}; "
                "rerun the stale shards with the same inputs, model and options, or remove their manifests"
            )
    count = int(first["n_shards"])
    present = {int(m["shard"]): m for m in manifests}
    missing = [i for i in range(count) if i not in present]
    if missing:
        raise ShardError(f"{where}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} not run yet (no manifest)")
    unfinished = [i for i in range(count) if not present[i].get("complete")]
    if unfinished:
        raise ShardError(
            f"{where}: shard(s) {', '.join(f'{i}/{count}' for i in unfinished)} did not finish; rerun them "
            "(they resume where they stopped)"
        )
    ordered = [present[i] for i in range(count)]
    indices = sorted(int(i) for m in ordered for i, _ in m["items"])
    if indices != list(range(int(first["n_items"]))):
        raise ShardError(f"{where}: the shards' items do not cover the {first['n_items']} inputs exactly once")
    return ordered


def run_is_complete(folder: str | os.PathLike[str], run_key: str, count: int) -> bool:
    """Whether every shard of the run ``run_key`` (``count`` shards) has written a finished manifest."""
    for index in range(count):
        path = manifest_path(folder, Shard(index, count))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if data.get("run_key") != run_key or not data.get("complete"):
            return False
    return True


def merged_items(manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """Item names of a complete run, in input order."""
    pairs = sorted((int(i), str(name)) for m in manifests for i, name in m["items"])
    return [name for _, name in pairs]
