"""The one protocol of every resumable, shardable run: plan → shard → pending → compute → verify → complete → merge.

``predict`` and ``embed`` (:mod:`seqdance.inference.runs`), ``score`` of many proteins
(:mod:`seqdance.scoring.proteins`), ``benchmark-dms`` (:mod:`seqdance.scoring.dms`) and ``analyze attention``
(:mod:`seqdance.analysis.attention_run`) run through :class:`ShardedRun`; none keeps manifest, pending or
completion code of its own. A command plugs in with two things:

* a :class:`RunLayout` subclass: where its outputs live, how ONE item's output is checked (:meth:`RunLayout.check`)
  and how all of them are combined (:meth:`RunLayout.combine`). A layout is built from the output path and the run
  record alone, so ``seqdance merge`` can check and combine a run without its inputs or model;
* a ``compute(units, pending)`` function that computes the given units and writes the outputs of the pending
  items among them (atomically, one item at a time), returning the items that failed with a user error.

Words: an **item** (:class:`RunItem`) is one input and its one output (a sequence -> ``OUT/<id>.npz``, a protein ->
``proteins/<id>.csv``, an assay -> its tables), with what that output must record (``expect``: the content
fields, e.g. the sequence's digest, the model fingerprint and the value-changing options; their hash is the
item's content key). A **unit** (:class:`WorkUnit`) is the items computed together (a batch of sequences, one
protein, one assay) and its estimated cost.

The steps of :meth:`ShardedRun.execute`:

1. **plan**: the caller lists every item and unit of the whole run, cut exactly as one process cuts it;
2. **shard**: this process keeps its units (:func:`seqdance.inference.sharding.shard_units`, balanced by cost);
   a sharded run writes its manifest, unfinished;
3. **pending**: the owned items whose output does not check out (all of them with ``overwrite``). An output
   checks out only when it exists, opens, records the item's content key and passes its own content check
   (row count, array shapes, the sequence it holds); anything else is recomputed;
4. **compute**: the caller's function runs the units holding a pending item;
5. **verify**: every computed item checks out now (else a :class:`ShardError` names the file);
6. **complete**: the manifest is rewritten, finished, with every owned item's expectations and the failures;
7. **merge**: when every shard of the run has finished (or the run is not sharded), every item of the run is
   checked against the plan in the manifests (sequence, model fingerprint and options, through its content
   key, and its content check) and the layout combines them. A file that does not belong is named, never
   merged. :func:`merge_run` does the same on demand.

Only a :class:`~seqdance.errors.SeqdanceError` raised for one item is recorded as that item's failure (and retried
by the next run); any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from seqdance.errors import InputError
from seqdance.inference.sharding import (
    Shard,
    ShardError,
    complete_run,
    content_key,
    manifest_path,
    read_manifest,
    run_is_complete,
    shard_units,
    write_manifest,
)
from seqdance.inference.writer import Throughput
from seqdance.wording import counted

log = logging.getLogger(__name__)

#: How a differing content field is said in messages, in the order fields are compared (the most telling first;
#: fields not listed come last and are named as they are).
FIELD_WORDS: dict[str, str] = {
    "sequence": "another sequence than the run's input",
    "variant": "another variant (its sequence differs)",
    "protein": "another protein entry of the store",
    "inputs": "other input rows",
    "table": "another assay table",
    "model": "another model (its fingerprint differs)",
    "esm2": "another ESM2 model (its fingerprint differs)",
    "options": "other options",
    "settings": "other settings",
}


@dataclass(frozen=True)
class RunItem:
    """One input of a run and what its output must record."""

    index: int  # position in the run's input order
    id: str  # its name (sequence id, protein, assay)
    output: str  # its output's name in the run's folder (a file stem)
    expect: Mapping[str, str]  # content fields its output must record (hashed into its content key)

    @property
    def key(self) -> str:
        """The content key the item's output must record."""
        return content_key(dict(self.expect))


@dataclass(frozen=True)
class WorkUnit:
    """Items computed together (a batch of sequences, one protein, one assay) and their estimated cost."""

    items: tuple[int, ...]
    cost: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """Whether one item's output checks out; ``where`` names the file (or file and entry), ``why`` what is wrong."""

    ok: bool
    where: str
    why: str = ""

    @classmethod
    def judge(cls, where: str, item: RunItem, recorded: Mapping[str, Any], recorded_key: Any,
              problem: str | None = None, problem_where: str | None = None) -> Verdict:
        """The verdict on an output that opened: ``recorded`` the content fields it records, ``recorded_key`` its
        recorded content key, ``problem`` what its own content check found (or None; found in ``problem_where``,
        default ``where``). A foreign output is named as such before any damage is."""
        rank = {name: k for k, name in enumerate(FIELD_WORDS)}
        for name in sorted(item.expect, key=lambda n: (rank.get(n, len(rank)), n)):
            if recorded.get(name) != item.expect[name]:
                return cls(False, where, f"holds a result of {FIELD_WORDS.get(name, 'another ' + name)}")
        if recorded_key != item.key:
            return cls(False, where, "records another content key (written by another seqdance version?)")
        if problem:
            return cls(False, problem_where or where, problem)
        return cls(True, where)


def missing(where: str | os.PathLike[str]) -> Verdict:
    return Verdict(False, str(where), "is missing")


def unreadable(where: str | os.PathLike[str], exc: BaseException | str) -> Verdict:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return Verdict(False, str(where), f"is unreadable ({text})")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | Verdict:
    """The JSON object an output records beside it (its content key and fields), or the verdict on why it cannot
    be read (unreadable, not JSON, not an object)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return unreadable(path, exc)
    if not isinstance(data, dict):
        return unreadable(path, f"a JSON {type(data).__name__}, not an object")
    return data


def csv_with_record_verdict(table: str | os.PathLike[str], record: str | os.PathLike[str], item: RunItem,
                            n_rows: int) -> Verdict:
    """The verdict on one output made of a CSV table and the JSON record beside it: both present, the record
    readable and of this item's content, the table whole with ``n_rows`` rows."""
    table, record = Path(table), Path(record)
    if not table.is_file() or not record.is_file():
        return missing(table if not table.is_file() else record)
    recorded = read_record(record)
    if isinstance(recorded, Verdict):
        return recorded
    return Verdict.judge(str(table), item, recorded, recorded.get("content_key"), csv_table_problem(table, n_rows))


def csv_table_problem(path: str | os.PathLike[str], n_rows: int) -> str | None:
    """The content check of a CSV output: why it is not whole (None when it is). Whole is a header and
    ``n_rows`` rows, each with as many fields as the header, and a complete last line: a file cut short, cut in
    the middle of a row, or empty fails."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        return f"is unreadable ({' '.join(str(exc).split())})"
    if not text:
        return "is empty"
    if not text.endswith("\n"):
        return "is cut short (its last line is not complete)"
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, [])
    found = 0
    for found, fields in enumerate(rows, start=1):
        if len(fields) != len(header):
            return f"is damaged: row {found} has {len(fields)} field(s), not {len(header)}"
    if found != n_rows:
        return f"holds {found} row(s), not {n_rows} (cut short?)"
    return None


class RunLayout(ABC):
    """Where one command's outputs live, how one item's output is checked and how all are combined.

    Subclasses set :attr:`command` (the name in manifests and in ``seqdance merge``) and :attr:`unit_noun`, and
    implement :meth:`check` and :meth:`combine`. ``target`` is the command's ``-o``; ``run`` the run record (what
    every shard of the run shares: input digests, model fingerprints, options); ``shard`` the shard being computed
    (None for a single process and for a merge).
    """

    command: ClassVar[str]
    #: How messages call a unit of this command, singular and plural ("batch"/"batches", "protein"/"proteins").
    unit_noun: ClassVar[tuple[str, str]] = ("unit", "units")

    def __init__(self, target: str | os.PathLike[str], run: Mapping[str, Any], shard: Shard | None = None) -> None:
        self.target = Path(target)
        self.run = dict(run)
        self.shard = shard

    @classmethod
    def manifest_folder(cls, target: str | os.PathLike[str]) -> Path:
        """Where the shards of a run into ``target`` keep their manifests."""
        return Path(target) / "shards"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:  # noqa: B027 - optional hook
        """Before anything is checked: claim the output (refuse another run's), clean what a killed run left."""

    @abstractmethod
    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        """One verdict per item, in order: does its output exist, open, record ``item.key`` and pass its own
        content check? Never raises for a damaged output (that is a verdict); may raise for a folder that
        belongs to another run."""

    def end(self, items: Sequence[RunItem], finished: bool) -> None:  # noqa: B027 - optional hook
        """After compute, also when it failed (``finished`` False): keep what was written (e.g. flush buffered
        outputs) and, when it finished, put it in its final place (e.g. fold part files)."""

    @abstractmethod
    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        """Write the combined outputs of the whole run (every item checked out or failed); returns their size
        (rows, entries)."""


#: compute(units, pending) -> {item index: why it failed} for items that failed with a user error.
Compute = Callable[[list[WorkUnit], set[int]], Mapping[int, str] | None]


@dataclass
class RunReport:
    """What a run (or this shard of it) did."""

    n_items: int  # in the whole run
    n_units: int  # in the whole run
    n_owned: int  # items of this shard (all of them without shards)
    n_owned_units: int
    n_done: int = 0  # owned items whose output already checked out
    n_computed: int = 0  # items computed and written now
    failures: dict[str, str] = field(default_factory=dict)  # id -> why, items that failed with a user error
    merged: bool = False  # the combined outputs were written
    n_combined: int = 0  # their size (rows, entries)
    shard: Shard | None = None
    unit_noun: tuple[str, str] = ("unit", "units")
    throughput: Throughput = field(default_factory=Throughput)

    @property
    def idle(self) -> bool:
        """This shard received no unit: the run has fewer units than shards."""
        return self.shard is not None and self.n_owned_units == 0

    def idle_reason(self) -> str:
        """Why a shard received nothing, in one line (empty when it did)."""
        if not self.idle or self.shard is None:
            return ""
        one, many = self.unit_noun
        idle = max(0, self.shard.count - self.n_units)
        units = f"{self.n_units} {one if self.n_units == 1 else many}"
        return (f"shard {self.shard.label} received no {one}: the run's {counted(self.n_items, 'input')} make {units}, "
                f"dealt whole to {self.shard.count} shards, so {counted(idle, 'shard')} "
                f"{'has' if idle == 1 else 'have'} nothing to compute")


class ShardedRun:
    """One run of a command through the protocol (see the module docstring)."""

    def __init__(
        self,
        layout: RunLayout,
        items: Sequence[RunItem],
        units: Sequence[WorkUnit],
        *,
        shard: Shard | None = None,
        overwrite: bool = False,
        unit_keys: Sequence[str] | None = None,
    ) -> None:
        self.layout = layout
        self.items = list(items)
        self.units = list(units)
        self.shard = shard
        self.overwrite = overwrite
        covered = sorted(i for unit in self.units for i in unit.items)
        if covered != list(range(len(self.items))) or any(item.index != k for k, item in enumerate(self.items)):
            raise InputError(f"{layout.command}: the run's units do not cover its {len(self.items)} items once each")
        self.run = {**layout.run, "command": layout.command, "n_shards": shard.count if shard else 1}
        self.run_key = content_key(self.run)
        if shard is None:
            owned_units = list(range(len(self.units)))
        else:
            keys = unit_keys or [self.items[unit.items[0]].id if unit.items else "" for unit in self.units]
            owned_units = shard_units([unit.cost for unit in self.units], keys, shard)
        self.owned_units = [self.units[u] for u in owned_units]
        self.owned = sorted(i for unit in self.owned_units for i in unit.items)
        self.throughput = Throughput()

    # --- the steps -------------------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.layout.manifest_folder(self.layout.target)

    def _write_manifest(self, *, complete: bool, failures: Mapping[str, str]) -> None:
        if self.shard is None:
            return
        owned = [self.items[i] for i in self.owned]
        shared = _shared_fields(owned)
        write_manifest(self.folder, self.shard, {
            "command": self.layout.command, "run_key": self.run_key, "run": self.run, "n_items": len(self.items),
            "expect": shared, "failures": dict(failures), "complete": complete,
            "items": [[item.index, item.id, item.output,
                       {k: v for k, v in item.expect.items() if k not in shared}] for item in owned],
        })

    def pending(self) -> list[int]:
        """Owned items whose output does not check out (all of them with ``overwrite``), logging why."""
        if self.overwrite:
            return list(self.owned)
        owned = [self.items[i] for i in self.owned]
        todo = []
        for item, verdict in zip(owned, self.layout.check(owned)):
            if not verdict.ok:
                if "missing" not in verdict.why:
                    log.warning("%s %s; recomputing it", verdict.where, verdict.why)
                todo.append(item.index)
        return todo

    def verify(self, computed: Sequence[int]) -> None:
        """Every item computed now checks out (a ShardError names the first that does not)."""
        items = [self.items[i] for i in computed]
        for verdict in self.layout.check(items):
            if not verdict.ok:
                raise ShardError(f"{verdict.where} {verdict.why} right after it was written (a full disk, or "
                                 "another process writing the same outputs?)")

    def execute(self, compute: Compute) -> RunReport:
        """Run every step; returns what was done."""
        report = RunReport(len(self.items), len(self.units), len(self.owned), len(self.owned_units),
                           shard=self.shard, unit_noun=self.layout.unit_noun, throughput=self.throughput)
        owned = [self.items[i] for i in self.owned]
        self.layout.begin(owned, self.overwrite)
        self._write_manifest(complete=False, failures={})
        pending = self.pending()
        report.n_done = len(self.owned) - len(pending)
        todo = set(pending)
        units = [unit for unit in self.owned_units if todo.intersection(unit.items)]
        failed: dict[int, str] = {}
        finished = False
        self.throughput.start()
        try:
            if units:
                failed = {int(i): str(why) for i, why in (compute(units, todo) or {}).items()}
            finished = True
        finally:
            self.throughput.stop()
            self.layout.end(owned, finished)
        computed = [i for i in pending if i not in failed]
        self.verify(computed)
        report.n_computed = len(computed)
        report.failures = {self.items[i].id: why for i, why in sorted(failed.items())}
        self._write_manifest(complete=True, failures=report.failures)
        if self.shard is None:
            report.n_combined = self.layout.combine(self.items, report.failures)
            report.merged = True
        elif run_is_complete(self.folder, self.run_key, self.shard.count):
            report.n_combined = merge_run(type(self.layout), self.layout.target).n_combined
            report.merged = True
        return report


def _shared_fields(items: Sequence[RunItem]) -> dict[str, str]:
    """Content fields every item expects alike (stored once in a manifest)."""
    if not items:
        return {}
    first = dict(items[0].expect)
    return {k: v for k, v in first.items() if all(item.expect.get(k) == v for item in items[1:])}


@dataclass
class MergeResult:
    command: str
    n_shards: int
    n_items: int
    n_combined: int
    failures: dict[str, str]
    layout: RunLayout


def manifest_items(manifests: Sequence[Mapping[str, Any]]) -> list[RunItem]:
    """The items of a finished run, in input order, with what each output must record."""
    items = []
    for m in manifests:
        for index, item_id, output, fields in m["items"]:
            items.append(RunItem(int(index), str(item_id), str(output), {**m["expect"], **fields}))
    return sorted(items, key=lambda item: item.index)


def merge_run(layout_class: type[RunLayout], target: str | os.PathLike[str]) -> MergeResult:
    """Check a finished sharded run into ``target`` and write its combined outputs (what ``seqdance merge`` does).

    Every shard must have finished and belong to the same run; every item's output (failed items excepted) must
    check out against the plan the manifests record; the first that does not is named with the shard to rerun.
    """
    folder = layout_class.manifest_folder(target)
    manifests = complete_run(folder, layout_class.command)
    run = manifests[0]["run"]
    items = manifest_items(manifests)
    owner = {item[0]: m["shard"] for m in manifests for item in m["items"]}
    failures: dict[str, str] = {}
    for m in manifests:
        failures.update(m["failures"])
    layout = layout_class(target, run)
    checked = [item for item in items if item.id not in failures]
    for item, verdict in zip(checked, layout.check(checked)):
        if not verdict.ok:
            count = manifests[0]["n_shards"]
            raise ShardError(f"{verdict.where} {verdict.why}, so it is not merged; rerun shard "
                             f"{owner[item.index]}/{count} (it recomputes it)")
    return MergeResult(layout_class.command, len(manifests), len(items), layout.combine(items, failures), failures,
                       layout)


def find_run(target: str | os.PathLike[str], layouts: Sequence[type[RunLayout]]) -> type[RunLayout]:
    """The layout of the sharded run whose manifests are found for ``target`` (``seqdance merge``)."""
    tried = []
    for layout in layouts:
        folder = layout.manifest_folder(target)
        tried.append(str(folder))
        first = next((p for p in sorted(folder.glob("shard-*-of-*.json"))), None) if folder.is_dir() else None
        if first is None:
            continue
        command = read_manifest(first)["command"]
        for candidate in layouts:
            if candidate.command == command and candidate.manifest_folder(target) == folder:
                return candidate
        raise ShardError(f"{first}: a manifest of an unknown command {command!r}")
    raise ShardError(f"{target}: no shard manifests in {' or '.join(dict.fromkeys(tried))} (run the shards with "
                     "--shard i/N first)")


__all__ = [
    "FIELD_WORDS",
    "MergeResult",
    "RunItem",
    "RunLayout",
    "RunReport",
    "ShardedRun",
    "Verdict",
    "WorkUnit",
    "csv_table_problem",
    "find_run",
    "manifest_items",
    "manifest_path",
    "merge_run",
    "missing",
    "read_record",
    "unreadable",
]
