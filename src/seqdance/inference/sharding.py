"""Shards of a large inference run: which shard this process is, a token-balanced partition, shard manifests.

A run over many inputs (``predict``, ``embed``, ``score``, ``benchmark-dms``, ``analyze attention``) can be cut
into N shards run by N independent processes: the tasks of a SLURM job array (``--shard i/N``, 0-based like
``dataset build``; parsed by :func:`seqdance.shards.parse_shard`) or the ranks of ``torchrun`` (RANK /
WORLD_SIZE, no process group). Both together give shard ``i*W + rank`` of ``N*W``.

**Partition.** The run is first cut into work units (a batch of sequences, one long sequence, one protein, one
assay) exactly as a single process would cut it, so that every value is computed in the same batch whatever N
is. The units are then dealt out by their cost, greedy longest-first into the lightest shard (ties by the unit's
key, then by shard index), which is deterministic and keeps the shards' loads within one unit of each other.
A unit's cost is its padded token count with a quadratic term for attention (and the pair head), calibrated on
the 35M model's CPU timings in docs/predict.md: ``t * (1 + t / K)`` per input of ``t`` tokens with ``K = 65``
when pair outputs or attention maps are computed and ``K = 1680`` for the residue-only path.

**Manifests.** Each shard writes ``shard-i-of-N.json`` into the run's manifest folder (``OUTDIR/shards/``,
``OUT.h5.shards/``): the run key (a hash of everything that must agree between the shards: the inputs, the
model fingerprint, the options, N), the items it owns with what each item's output must record, the items that
failed with a user error, and whether it finished. :class:`seqdance.inference.sharded_run.ShardedRun` writes
and reads them; the functions here only know their format, and name in one line a manifest that is unreadable,
of another shape, missing, unfinished, or of another run.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.shards import MAX_SHARDS, Shard, ShardError, parse_shard

__all__ = [
    "MANIFEST_FORMAT",
    "MAX_SHARDS",
    "Shard",
    "ShardError",
    "complete_run",
    "content_key",
    "input_cost",
    "launcher_shard",
    "local_rank",
    "parse_shard",
    "partition",
    "read_manifests",
    "records_digest",
    "resolve_shard",
    "run_is_complete",
    "shard_units",
    "write_manifest",
]

#: Quadratic-cost scale (tokens) of one input: cost = t * (1 + t / K).
PAIR_COST_TOKENS = 65.0
RESIDUE_COST_TOKENS = 1680.0
#: Version of the manifest layout; manifests of another version are named as such (rerun the shard).
MANIFEST_FORMAT = 2
_MANIFEST_RE = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")


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


def resolve_shard(text: str | Shard | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of this process: ``--shard i/N`` refined by torchrun's rank, or the rank alone, or None."""
    given = parse_shard(text) if isinstance(text, str) else text
    launched = launcher_shard(env)
    if launched is None or launched.count == 1:
        return given
    if given is None:
        return launched
    count = given.count * launched.count
    if count > MAX_SHARDS:
        raise ShardError(f"--shard {given.label} under torchrun's WORLD_SIZE={launched.count} makes {count:,} shards, "
                         f"more than {MAX_SHARDS:,}")
    return Shard(given.index * launched.count + launched.index, count)


def input_cost(tokens: int, *, quadratic: bool) -> float:
    """Estimated cost of one model input of ``tokens`` tokens (see the module docstring)."""
    scale = PAIR_COST_TOKENS if quadratic else RESIDUE_COST_TOKENS
    return float(tokens) * (1.0 + tokens / scale)


def _deal(costs: Sequence[float], keys: Sequence[str], n_shards: int) -> list[tuple[int, int]]:
    """(unit, shard) for every unit: greedy longest-first into the lightest shard (memory O(units), not O(N))."""
    if not 1 <= n_shards <= MAX_SHARDS:
        raise ShardError(f"the number of shards must lie in 1..{MAX_SHARDS:,}, got {n_shards}")
    if len(costs) != len(keys):
        raise InputError(f"got {len(costs)} costs for {len(keys)} keys")
    order = sorted(range(len(costs)), key=lambda u: (-float(costs[u]), str(keys[u]), u))
    used: list[tuple[float, int]] = []  # heap of (load, shard) of the shards given a unit so far
    fresh = 0  # shards fresh..N-1 have load 0 and nothing yet; costs are >= 0, so one of them or the heap's top
    dealt = []
    for unit in order:
        cost = max(0.0, float(costs[unit]))
        if used and (fresh >= n_shards or used[0] <= (0.0, fresh)):
            load, shard = heapq.heappop(used)
        else:
            load, shard = 0.0, fresh
            fresh += 1
        heapq.heappush(used, (load + cost, shard))
        dealt.append((unit, shard))
    return dealt


def partition(costs: Sequence[float], keys: Sequence[str], n_shards: int) -> list[list[int]]:
    """Unit indices of each of ``n_shards`` shards: greedy longest-first into the lightest shard.

    Deterministic: units are taken by decreasing cost, ties by ``keys``; a unit goes to the shard with the
    smallest load so far, ties to the lowest shard index. Each shard's list is in increasing unit order.
    """
    owned: list[list[int]] = [[] for _ in range(min(n_shards, len(costs)))]
    for unit, shard in _deal(costs, keys, n_shards):
        owned[shard].append(unit)
    return [sorted(units) for units in owned] + [[] for _ in range(n_shards - len(owned))]


def shard_units(costs: Sequence[float], keys: Sequence[str], shard: Shard) -> list[int]:
    """The units :func:`partition` gives ``shard``, in increasing order, without listing the other shards."""
    return sorted(unit for unit, owner in _deal(costs, keys, shard.count) if owner == shard.index)


def content_key(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``: the identity of a run or of one record's output."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def text_digest(text: str) -> str:
    """SHA-256 (hex) of a text: how run plans and outputs record a sequence without holding it twice."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def records_digest(items: Sequence[tuple[str, str]]) -> str:
    """Hash of an ordered list of (id, sequence) pairs (the inputs of a run)."""
    digest = hashlib.sha256()
    for seq_id, sequence in items:
        digest.update(seq_id.encode("utf-8") + b"\0" + sequence.encode("utf-8") + b"\n")
    return digest.hexdigest()


def manifest_path(folder: str | os.PathLike[str], shard: Shard) -> Path:
    return Path(folder) / f"{shard.name}.json"


def write_manifest(folder: str | os.PathLike[str], shard: Shard, data: Mapping[str, Any]) -> Path:
    """Write (atomically) the manifest of one shard; ``data`` holds everything but the shard's place."""
    path = manifest_path(folder, shard)
    body = {"format": MANIFEST_FORMAT, **dict(data), "shard": shard.index, "n_shards": shard.count}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return path


#: Fields of a manifest and their types (a manifest of another shape is named, never half-read).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "command": str, "run_key": str, "run": dict, "shard": int, "n_shards": int, "n_items": int, "items": list,
    "expect": dict, "failures": dict, "complete": bool,
}


def _check_manifest(path: Path, data: Any) -> dict[str, Any]:
    """The manifest ``data`` read from ``path`` if it has the expected shape; a one-line ShardError otherwise."""
    where = f"{path}: not a shard manifest"
    if not isinstance(data, dict):
        raise ShardError(f"{where} (a JSON {type(data).__name__}, not an object); rerun that shard")
    if data.get("format") != MANIFEST_FORMAT:
        raise ShardError(f"{where} of this seqdance version (format {data.get('format')!r}, expected "
                         f"{MANIFEST_FORMAT}); rerun that shard")
    for name, kind in _FIELDS.items():
        value = data.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ShardError(f"{where} ('{name}' is {value!r}, expected {getattr(kind, '__name__', kind)}); "
                             "rerun that shard")
    match = _MANIFEST_RE.match(path.name)
    if match and (int(match.group(1)), int(match.group(2))) != (data["shard"], data["n_shards"]):
        raise ShardError(f"{where} of its name (it says shard {data['shard']}/{data['n_shards']}); rerun that shard")
    if not 1 <= data["n_shards"] <= MAX_SHARDS or not 0 <= data["shard"] < data["n_shards"]:
        raise ShardError(f"{where} (shard {data['shard']}/{data['n_shards']} is out of range); rerun that shard")
    for item in data["items"]:
        if not (isinstance(item, list) and len(item) == 4 and isinstance(item[0], int) and isinstance(item[1], str)
                and isinstance(item[2], str) and isinstance(item[3], dict)):
            raise ShardError(f"{where} (an item is {item!r}, expected [index, id, output, fields]); rerun that shard")
    return data


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One shard manifest (with its ``path``); unreadable or of another shape: a ShardError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable shard manifest ({' '.join(str(exc).split())}); rerun that shard"
                         ) from exc
    data = _check_manifest(path, data)
    data["path"] = str(path)
    return data


def read_manifests(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every shard manifest in ``folder`` (each with its ``path``), sorted by shard count and index."""
    folder = Path(folder)
    paths = sorted(folder.glob("shard-*-of-*.json")) if folder.is_dir() else []
    found = [read_manifest(path) for path in paths if _MANIFEST_RE.match(path.name)]
    return sorted(found, key=lambda d: (d["n_shards"], d["shard"]))


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(keys) or "run key"


def _shard_list(indices: Sequence[int], count: int) -> str:
    shown = ", ".join(f"{i}/{count}" for i in indices[:10])
    return shown + (f" and {len(indices) - 10:,} more" if len(indices) > 10 else "")


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
        other = [m for m in manifests if m["command"] != command]
        if other:
            raise ShardError(f"{other[0]['path']} is a manifest of '{other[0]['command']}', not '{command}'")
    first = manifests[0]
    for m in manifests[1:]:
        if m["run_key"] != first["run_key"]:
            raise ShardError(
                f"{where} mixes shards of different runs: {Path(m['path']).name} differs from "
                f"{Path(first['path']).name} in {_differences(first['run'], m['run'])}; "
                "rerun the stale shards with the same inputs, model and options, or remove their manifests"
            )
    count = first["n_shards"]
    present = {m["shard"]: m for m in manifests}
    missing = [i for i in range(count) if i not in present]
    if missing:
        raise ShardError(f"{where}: shard(s) {_shard_list(missing, count)} not run yet (no manifest)")
    unfinished = [i for i in range(count) if not present[i]["complete"]]
    if unfinished:
        raise ShardError(f"{where}: shard(s) {_shard_list(unfinished, count)} did not finish; rerun them "
                         "(they resume where they stopped)")
    ordered = [present[i] for i in range(count)]
    indices = sorted(item[0] for m in ordered for item in m["items"])
    if indices != list(range(first["n_items"])):
        raise ShardError(f"{where}: the shards' items do not cover the {first['n_items']} inputs exactly once")
    return ordered


def run_is_complete(folder: str | os.PathLike[str], run_key: str, count: int) -> bool:
    """Whether every shard of the run ``run_key`` (``count`` shards) has written a finished manifest."""
    for index in range(count):
        try:
            data = read_manifest(manifest_path(folder, Shard(index, count)))
        except ShardError:
            return False
        if data["run_key"] != run_key or not data["complete"]:
            return False
    return True
