"""Build a store from a manifest of trajectories and structures, in parallel, resumably and crash-safely.

How a build survives ``kill -9`` at any moment (each step is one method of :class:`StoreBuild`):

1. **recover** — temporary files a killed run left are deleted; proteins already in the store or in the
   journal count as complete when their recorded inputs and options equal the manifest's *and* every input
   file still has the recorded content (size, then SHA-256): a file replaced under the same name is recomputed. An
   exclusive lock on ``STORE.lock`` (released by the kernel when the process dies) keeps two builders off one store.
2. **pending** — everything else is computed, in parallel (:func:`seqdance.parallel.run_jobs`: in this process,
   local worker processes or Dask; a dead worker fails only its own protein; workers exit with the builder).
3. **accept** — each finished protein becomes one **journal** entry, ``STORE.journal/NAME.npz`` (targets *and*
   index row, written under a temporary name and renamed: whole or absent; :mod:`seqdance.store.journal`). Local
   workers write their own entries and send back only a small result (a worker killed while sending a large
   result could otherwise block the pool); in-process and Dask runs send the arrays back and this process
   writes the entry.
4. **fold** — only this process (the one writer) touches the HDF5 file: at the end (and every ``fold_every``
   proteins) it writes the journal and the proteins already in the store into a new file beside the store and
   renames it onto it (:class:`~seqdance.store.hdf5.StoreWriter`); only then are the folded journal entries
   deleted. The store file is therefore always the previous complete store or the new one.
5. **finish** — failures (a bad file, a protein without hydrogens, a worker that died) are recorded per protein
   in ``STORE.failures.csv``; they did not stop the run and are retried by the next one. Only a protein's own
   problems (a :class:`~seqdance.errors.SeqdanceError`) are such failures: any other exception is a bug — in this
   process it stops the build with its traceback (finished proteins stay in the journal); in a worker process it
   fails that protein, and the report counts it as a bug (``BuildReport.bugs``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seqdance.errors import InputError
from seqdance.features.options import MdOptions
from seqdance.features.options import md_options as md_options_with
from seqdance.io_utils import atomic_path, sha256_file
from seqdance.parallel import WORKER_DIED, default_threads_per_worker, run_jobs
from seqdance.schema import GROUP_KIND
from seqdance.store.compute import (
    BuildSettings,
    EntryResult,
    compute_entry,
    compute_to_journal,
    index_record,
)
from seqdance.store.hdf5 import (
    DEFAULT_LABEL,
    DynamicsStore,
    StoredProtein,
    StoreWriter,
    index_csv_path,
    software_versions,
    write_isolated,
)
from seqdance.store.journal import Journal, clean_store_temps, journal_dir, store_lock
from seqdance.store.manifest import ManifestEntry, read_manifest, same_spec, shard_of
from seqdance.store.merge import merge_stores

__all__ = ["BuildReport", "StoreBuild", "build_store", "failures_path", "journal_dir", "merge_stores"]

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did. ``proteins_per_s`` counts proteins computed in this run over the compute wall time."""

    store: Path
    total: int = 0  # proteins in the (sharded) manifest
    skipped: int = 0  # already complete before this run
    computed: int = 0
    failed: int = 0
    compute_seconds: float = 0.0
    fold_seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    backend: str = ""
    bugs: int = 0  # failures by an unexpected error in a worker process (their tracebacks are in the log)

    @property
    def proteins_per_s(self) -> float:
        return self.computed / self.compute_seconds if self.compute_seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.store}: {self.computed} computed, {self.skipped} already done, {self.failed} failed "
                f"of {self.total}; {self.proteins_per_s:.2f} proteins/s over {self.compute_seconds:.1f} s "
                f"({self.backend}), fold {self.fold_seconds:.1f} s")


def failures_path(store: Path) -> Path:
    return store.with_suffix(".failures.csv")


def _job_failed(entry: ManifestEntry, message: str) -> EntryResult:
    """A protein the parallel engine reports failed: its worker died, or the computation raised something other
    than the protein's own problem (those come back as failed results) — a bug, reported as one."""
    if message == WORKER_DIED:
        return EntryResult(entry.name, False, error=message)
    return EntryResult(entry.name, False, error=f"bug in seqdance (please report it): {message}", bug=True)


class StoreBuild:
    """One run of the build protocol on one store; call the steps in order under :func:`store_lock`."""

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        output: Path,
        settings: BuildSettings,
        *,
        compression: str | None,
        fold_every: int,
        build_meta: dict[str, Any],
    ) -> None:
        self.output = output
        self.settings = settings
        self.compression = compression
        self.fold_every = fold_every
        self.build_meta = build_meta
        self.entries = list(entries)
        self.by_name = {e.name: e for e in self.entries}
        self.journal = Journal(journal_dir(output))
        self.report = BuildReport(store=output, total=len(self.entries))
        self.stored: dict[str, dict[str, Any]] = {}
        self.journaled: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.failures: list[dict[str, Any]] = []
        self._since_fold = 0
        self._sha256: dict[Path, str] = {}
        self.stale: set[str] = set()  # stored proteins whose inputs changed (dropped unless recomputed)

    def recover(self) -> None:
        """Step 1: delete what a killed run left half-written; read what is complete (store, journal)."""
        clean_store_temps(self.output)
        self.journal.clean()
        self.stored = _stored_rows(self.output)
        _check_frequency(self.output, self.stored, self.settings.frequency)
        self.journaled = self.journal.records()

    def _same_content(self, entry: ManifestEntry, provenance: dict[str, Any]) -> bool:
        """Whether every input file still has the content recorded in ``provenance`` (size first, then SHA-256)."""
        recorded = provenance.get("inputs") or []
        if len(recorded) != len(entry.inputs):
            return False
        for (role, spec), rec in zip(entry.inputs, recorded):
            path = Path(spec.path)
            if rec.get("role") != role or not path.is_file():
                return False
            if rec.get("bytes") is not None and int(rec["bytes"]) != path.stat().st_size:
                return False
            if path not in self._sha256:
                self._sha256[path] = sha256_file(path)
            if rec.get("sha256") != self._sha256[path]:
                return False
        return True

    def _complete(self, entry: ManifestEntry) -> bool:
        spec = entry.spec()
        journaled = self.journaled.get(entry.name)
        if journaled is not None:
            record = journaled[1]
            if (same_spec(record["provenance"].get("spec"), spec) and _same_frequency(record, self.settings.frequency)
                    and self._same_content(entry, record["provenance"])):
                return True
            # computed from other inputs or options: never folded in, even if the recomputation fails
            self.journal.remove([journaled[0]], remove_directory=False)
            del self.journaled[entry.name]
        stored = self.stored.get(entry.name)
        if stored is None or not same_spec(stored["provenance"].get("spec"), spec):
            return False
        if not self._same_content(entry, stored["provenance"]):
            log.info("%s: an input file changed since it was stored; recomputing", entry.name)
            self.stale.add(entry.name)
            return False
        return True

    def pending(self, *, overwrite: bool = False) -> list[ManifestEntry]:
        """Step 2: the entries with no complete result for their current inputs and options (all of them with
        ``overwrite``)."""
        todo = [e for e in self.entries if overwrite or not self._complete(e)]
        self.report.skipped = len(self.entries) - len(todo)
        return todo

    def compute(
        self,
        todo: Sequence[ManifestEntry],
        *,
        workers: int,
        scheduler: str | None,
        threads_per_worker: int | None,
        progress: bool,
    ) -> None:
        """Step 3: compute the pending proteins in parallel, accepting each as it arrives."""
        if not todo:
            self.report.backend = "none"
            return
        if scheduler:
            self.report.backend = f"dask ({scheduler})"
            task: Any = functools.partial(compute_entry, settings=self.settings)
        elif workers == 0:
            self.report.backend = "serial"
            task = functools.partial(compute_entry, settings=self.settings)
        else:
            self.report.backend = f"{workers} local worker process(es)"
            self.journal.directory.mkdir(parents=True, exist_ok=True)
            task = functools.partial(compute_to_journal, settings=self.settings,
                                     directory=str(self.journal.directory))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="dataset build", unit="protein")
        started = time.perf_counter()
        fold_seconds = self.report.fold_seconds
        try:
            for entry, result in run_jobs(
                task, todo, workers=workers, scheduler=scheduler,
                threads_per_worker=threads_per_worker or default_threads_per_worker(workers),
                on_failure=_job_failed, raise_in_process=True,
            ):
                self.accept(entry, result)
                if bar is not None:  # the protein just finished, named before the count moves
                    state = "done" if result.ok else "FAILED"
                    bar.set_postfix_str(f"{entry.name} {state} ({result.seconds:.1f} s), "
                                        f"{self.report.failed} failed", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self.report.compute_seconds = (time.perf_counter() - started) - (self.report.fold_seconds - fold_seconds)

    def accept(self, entry: ManifestEntry, result: EntryResult) -> None:
        """A finished protein enters the journal (a failed one the failure list); folds every ``fold_every``."""
        if not result.ok:
            self.failures.append({"name": entry.name, "source": entry.source, "kind": entry.kind,
                                  "error": result.error, "seconds": round(result.seconds, 3)})
            self.report.failed += 1
            self.report.bugs += result.bug
            log.info("%s failed: %s", entry.name, result.error)
            return
        record = index_record(entry, result)
        if result.residue is not None:  # arrays came back (in-process, Dask): journal them here
            self.journal.write(record, result.residue, result.pair)  # type: ignore[arg-type]
        self.journaled[entry.name] = (self.journal.path_for(entry.name), record)
        self.report.computed += 1
        self._since_fold += 1
        if self.fold_every and self._since_fold >= self.fold_every:
            self.fold(final=False)

    def fold(self, *, final: bool) -> None:
        """Step 4: write journal + still-valid stored proteins into a new store file renamed into place."""
        started = time.perf_counter()
        args = (self.output, self.journal, self.journaled, self.stored, self.by_name, self.settings.frequency,
                self.build_meta, self.compression)
        if _fold(*args, final=final, stale=self.stale, check_only=True):
            # in a child process: a full disk makes HDF5 fail (or crash); the store file stays the previous one
            write_isolated(self.output, _fold, *args, final=final, stale=self.stale)
        self.journaled.clear()
        self.stored = _stored_rows(self.output)
        self._since_fold = 0
        self.report.fold_seconds += time.perf_counter() - started

    def finish(self) -> BuildReport:
        """Step 5: record this run's failures beside the store (or remove a stale list) and report."""
        self.report.failures = self.failures
        _write_failures(self.output, self.failures)
        return self.report


def build_store(
    manifest: str | os.PathLike[str] | Sequence[ManifestEntry],
    output: str | os.PathLike[str],
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    scheduler: str | None = None,
    md_options: MdOptions | None = None,
    frequency: str | None = None,
    max_residues: int | None = None,
    missing_hydrogens: str | None = None,
    compression: str | None = "auto",
    threads_per_worker: int | None = None,
    fold_every: int = 0,
    progress: bool = False,
    overwrite: bool = False,
) -> BuildReport:
    """Compute every protein of a manifest not yet in ``output`` and fold them into the store.

    ``workers``: 0 computes in this process, N ≥ 1 uses N local worker processes; ``scheduler``: a
    dask.distributed scheduler address (or scheduler file) instead. ``shard=(i, N)`` builds only the proteins
    of shard i (by a hash of the name) — write each shard to its own store and combine them with
    :func:`merge_stores`. ``md_options``: the options every MD row starts from (its manifest columns change
    them); ``frequency`` (interaction frequency mode of MD entries, docs/design.md#interaction-frequencies) and
    ``missing_hydrogens`` change these.
    ``fold_every``: also fold the journal into the store after every this many computed proteins (bounds the
    journal's disk use on long builds; each fold copies the store once); 0 folds only at the end.
    ``overwrite``: recompute every protein of the manifest, even those the store already holds.
    """
    changes = {k: v for k, v in (("frequency", frequency), ("missing_hydrogens", missing_hydrogens)) if v is not None}
    md = md_options_with(md_options, **changes)
    if workers < 0:
        raise InputError("workers must be ≥ 0")
    output = Path(output)
    manifest_path: Path | None = None
    if isinstance(manifest, (str, os.PathLike)):
        manifest_path = Path(manifest)
        entries = read_manifest(manifest_path)
    else:
        entries = list(manifest)
    if shard is not None:
        index, n_shards = shard
        entries = [e for e in entries if shard_of(e.name, n_shards) == index]
    build_meta = {
        "manifest": str(manifest_path) if manifest_path else None,
        "manifest_sha256": sha256_file(manifest_path) if manifest_path else None,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "settings": {"frequency": md.frequency, "max_residues": max_residues,
                     "missing_hydrogens": md.missing_hydrogens},
    }
    settings = BuildSettings(md=md, max_residues=max_residues)
    build = StoreBuild(entries, output, settings, compression=compression, fold_every=fold_every,
                       build_meta=build_meta)
    with store_lock(output):
        build.recover()
        build.compute(build.pending(overwrite=overwrite), workers=workers, scheduler=scheduler,
                      threads_per_worker=threads_per_worker, progress=progress)
        build.fold(final=True)
        return build.finish()


def _stored_rows(output: Path) -> dict[str, dict[str, Any]]:
    if not output.exists():
        return {}
    with DynamicsStore.open(output) as store:
        if store.released:
            raise InputError(f"{output} is a released-layout file; build into a new store and merge")
        rows = {}
        for row in store.index.to_dict("records"):
            row["provenance"] = json.loads(row["provenance"]) if row.get("provenance") else {}
            rows[row["name"]] = row
    return rows


def _same_frequency(record: dict[str, Any], frequency: str) -> bool:
    return record["kind"] != "md" or record["provenance"].get("frequency") == frequency


def _check_frequency(output: Path, stored: dict[str, dict[str, Any]], frequency: str) -> None:
    for row in stored.values():
        if row["kind"] == "md" and row["provenance"].get("frequency", frequency) != frequency:
            raise InputError(
                f"{output} holds MD proteins built with frequency={row['provenance']['frequency']!r}; a store has "
                f"one frequency mode — build with --frequency {row['provenance']['frequency']} or into a new store"
            )


def _fold(
    output: Path,
    journal: Journal,
    journaled: dict[str, tuple[Path, dict[str, Any]]],
    stored: dict[str, dict[str, Any]],
    manifest: dict[str, ManifestEntry],
    frequency: str,
    build_meta: dict[str, Any],
    compression: str | None,
    *,
    final: bool = True,
    stale: set[str] | frozenset[str] = frozenset(),
    check_only: bool = False,
) -> bool:
    """Write journal + still-valid stored proteins into a new store file, rename it into place, then delete
    the folded journal entries (and, when ``final``, the emptied journal folder). Skipped when nothing would
    change. Returns whether a new file is (``check_only``: would be) written."""
    plan: list[tuple[int, str, str]] = []  # (order, name, where)
    for name, (_, record) in journaled.items():
        plan.append((int(record["order"]), name, "journal"))
    for name, row in stored.items():
        if name in journaled:
            continue
        entry = manifest.get(name)
        if entry is not None and (not same_spec(row["provenance"].get("spec"), entry.spec()) or name in stale):
            continue  # inputs changed and the recomputation failed: the stale values are dropped
        plan.append((int(row["order"]), name, "store"))
    plan.sort()

    def label_of(name: str, fallback: str | None) -> str:
        entry = manifest.get(name)
        if entry is not None and entry.label:
            return entry.label
        return fallback or DEFAULT_LABEL

    unchanged = (
        output.exists() and not journaled and len(plan) == len(stored)
        and all(label_of(n, stored[n]["label"]) == stored[n]["label"] for _, n, _ in plan)
        and all(manifest[n].source == stored[n]["source"] for _, n, _ in plan if n in manifest)
    )
    if unchanged:
        if final:
            journal.remove([], remove_directory=True)
        return False
    if check_only:
        return True
    has_md = any(GROUP_KIND.get(_group_of(n, journaled, stored), "") == "md" for _, n, _ in plan)
    metadata = {"frequency": frequency if has_md else None, "build": build_meta, "versions": software_versions()}
    source = DynamicsStore.open(output) if stored else None
    try:
        with StoreWriter(output, metadata=metadata, compression=compression) as writer:
            for order, name, where in plan:
                if where == "journal":
                    path, record = journaled[name]
                    residue, pair = Journal.arrays(path)
                    entry = manifest.get(name)
                    protein = StoredProtein(
                        name=name, sequence=record["sequence"],
                        source=entry.source if entry else record["source"],
                        group=entry.group if entry else record["group"],
                        label=label_of(name, stored.get(name, {}).get("label")),
                        kind=record["kind"], residue=residue, pair=pair,
                    )
                    writer.add(protein, order=order, provenance=record["provenance"])
                else:
                    assert source is not None
                    writer.copy_from(source, name, order=order, label=label_of(name, stored[name]["label"]))
    finally:
        if source is not None:
            source.close()
    journal.remove([path for path, _ in journaled.values()], remove_directory=final)
    with DynamicsStore.open(output) as store:
        store.export_index(index_csv_path(output))
    return True


def _group_of(name: str, journaled: dict[str, tuple[Path, dict[str, Any]]], stored: dict[str, dict[str, Any]]) -> str:
    if name in journaled:
        return str(journaled[name][1]["group"])
    return str(stored[name]["group"])


def _write_failures(output: Path, failures: list[dict[str, Any]]) -> None:
    path = failures_path(output)
    if not failures:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        pd.DataFrame(failures, columns=["name", "source", "kind", "error", "seconds"]).to_csv(tmp, index=False)
