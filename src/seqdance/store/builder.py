"""Build a store from a manifest of trajectories and structures, in parallel, resumably and crash-safely.

How a build survives ``kill -9`` at any moment:

1. Each finished protein becomes one **journal** entry, ``STORE.journal/NAME.npz``: its targets *and* its
   index row, written under a temporary name and renamed, so an entry exists whole or not at all — a protein
   counts as complete exactly when its entry exists. Local worker processes write their own entries and send
   back only a small result (a worker killed while sending a large result could otherwise block the pool);
   in-process and Dask runs send the arrays back and this process writes the entry.
2. Only this process (the one writer) touches the HDF5 file: at the end (and every ``fold_every`` proteins) it
   **folds** the journal and the proteins already in the store into a new file written beside the store and
   renamed onto it (:class:`~seqdance.store.hdf5.StoreWriter`); only then are the folded journal entries
   deleted. The store file is therefore always the previous complete store or the new one.
3. On restart, temporary files are deleted, proteins found in the store or the journal (with the same inputs
   and options) are skipped, everything else is computed. An exclusive lock on ``STORE.lock`` (released by the
   kernel when the process dies) keeps two builders off one store; workers exit when the builder is gone.

Failures (a bad file, a protein without hydrogens, a worker that died) are recorded per protein in
``STORE.failures.csv`` and do not stop the run; they are retried by the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from seqdance.io_utils import atomic_path, sha256_file
from seqdance.schema import GROUP_KIND
from seqdance.store.hdf5 import (
    DEFAULT_LABEL,
    DynamicsStore,
    StoredProtein,
    StoreWriter,
    index_csv_path,
    software_versions,
)
from seqdance.store.manifest import ManifestEntry, read_manifest, shard_of
from seqdance.store.transforms import features_to_targets, rmsf_scale

log = logging.getLogger(__name__)

FREQUENCIES = ("reference", "fraction")
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# --- per-protein computation (runs in workers) ------------------------------------------------------

@dataclass(frozen=True)
class BuildSettings:
    """Options that shape computed values (recorded in the store) — picklable, sent to every worker."""

    frequency: str = "reference"
    max_residues: int | None = None
    missing_hydrogens: str = "error"
    chunk_frames: int = 100


@dataclass
class EntryResult:
    name: str
    ok: bool
    sequence: str = ""
    residue: np.ndarray | None = None
    pair: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None), dict)) else str(value)


def _count_residues(path: Path) -> int | None:
    """Protein residues in a topology/structure, or None when MDTraj cannot read it cheaply."""
    try:
        import mdtraj

        top = mdtraj.load_topology(str(path))
    except Exception:
        return None
    return sum(1 for r in top.residues if r.is_protein)


def compute_entry(entry: ManifestEntry, settings: BuildSettings) -> EntryResult:
    """Features -> stored targets for one manifest entry; never raises (errors become a failed result)."""
    start = time.perf_counter()
    try:
        for role, path in entry.inputs:
            if not path.is_file():
                raise FileNotFoundError(f"{role} file not found: {path}")
        if entry.kind == "nma":
            from seqdance.features.nma import extract_nma
            from seqdance.features.structure import read_calpha_structure

            structure = read_calpha_structure(
                entry.structure, chains=entry.options.get("chains"), model=entry.options.get("model", 0)
            )
            if settings.max_residues and structure.n_residues > settings.max_residues:
                raise ValueError(f"{structure.n_residues} residues, more than max_residues={settings.max_residues}")
            features = extract_nma(structure)
        else:
            from seqdance.features import extract_md

            if settings.max_residues:
                n = _count_residues(entry.topology)  # type: ignore[arg-type]
                if n is not None and n > settings.max_residues:
                    raise ValueError(f"{n} residues, more than max_residues={settings.max_residues}")
            features = extract_md(
                entry.topology,  # type: ignore[arg-type]
                [str(t) for t in entry.trajectories],
                frequency=settings.frequency,  # type: ignore[arg-type]
                stride=entry.options.get("stride", 1),
                start=entry.options.get("start", 0),
                stop=entry.options.get("stop"),
                chunk_frames=settings.chunk_frames,
                missing_hydrogens=settings.missing_hydrogens,  # type: ignore[arg-type]
            )
        residue, pair = features_to_targets(features, entry.kind, name=entry.name)  # type: ignore[arg-type]
        provenance: dict[str, Any] = {
            "spec": entry.spec(),
            "inputs": [
                {"role": role, "path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
                for role, path in entry.inputs
            ],
            "chain_lengths": _jsonable(features.get("chain_lengths", [])),
        }
        if entry.kind == "md":
            provenance.update(frequency=settings.frequency, n_frames=int(features["n_frames"]),
                              scales=rmsf_scale(features), missing_hydrogens=settings.missing_hydrogens)
        else:
            skipped = features.get("skipped_residues", [])
            provenance.update(skipped_residues=[str(s) for s in skipped])  # type: ignore[union-attr]
        return EntryResult(entry.name, True, str(features["sequence"]), residue, pair, provenance,
                           seconds=time.perf_counter() - start)
    except Exception as exc:  # a per-protein failure: reported, never stops the run
        message = f"{type(exc).__name__}: {exc}".strip()
        log.debug("%s failed:\n%s", entry.name, traceback.format_exc())
        return EntryResult(entry.name, False, error=message, seconds=time.perf_counter() - start)


# --- journal ----------------------------------------------------------------------------------------

class Journal:
    """One atomic ``.npz`` per finished protein (arrays + index row as JSON) in ``STORE.journal/``."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path_for(self, name: str) -> Path:
        return self.directory / f"{quote(name, safe='')}.npz"

    def clean(self) -> None:
        """Delete temporary files a killed writer left behind."""
        if self.directory.is_dir():
            for tmp in self.directory.glob("*.tmp"):
                tmp.unlink(missing_ok=True)

    def write(self, record: dict[str, Any], residue: np.ndarray, pair: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path_for(record["name"])) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, residue=residue, pair=pair, record=np.array(json.dumps(record, sort_keys=True)))

    def records(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """name -> (file, record) of every complete entry (unreadable files are reported and ignored)."""
        out: dict[str, tuple[Path, dict[str, Any]]] = {}
        if not self.directory.is_dir():
            return out
        for path in sorted(self.directory.glob("*.npz")):
            try:
                with np.load(path) as data:
                    record = json.loads(str(data["record"]))
            except Exception as exc:  # cannot happen with atomic writes unless the disk is damaged
                log.warning("ignoring unreadable journal entry %s (%s)", path, exc)
                continue
            out[record["name"]] = (path, record)
        return out

    @staticmethod
    def arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
        with np.load(path) as data:
            return data["residue"], data["pair"]

    def remove(self, paths: Sequence[Path], *, remove_directory: bool = True) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        if remove_directory:
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only when empty


def compute_to_journal(entry: ManifestEntry, settings: BuildSettings, directory: str) -> EntryResult:
    """Local-worker task: compute one protein and write its journal entry here, returning only a small result.

    Large results never travel through the pool's pipe, so a worker killed at any moment (OOM killer) cannot
    leave a half-sent message that would block the builder; the journal entry is complete or absent.
    """
    result = compute_entry(entry, settings)
    if result.ok:
        try:
            Journal(Path(directory)).write(_record(entry, result), result.residue, result.pair)  # type: ignore[arg-type]
        except Exception as exc:
            return EntryResult(entry.name, False, error=f"journal write failed: {type(exc).__name__}: {exc}",
                               seconds=result.seconds)
        result.residue = result.pair = None
    return result


# --- engines ------------------------------------------------------------------------------------------

OnResult = Callable[[EntryResult], None]


@contextlib.contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """Children spawned inside inherit BLAS/OpenMP thread limits (no oversubscription with many workers)."""
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: str(threads) for k in _THREAD_ENV})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Worker initializer: a daemon thread ends this worker when the builder that started it is gone (e.g.
    kill -9 of the builder alone), so no orphaned workers keep computing or waiting forever."""
    import threading

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(interval)

    threading.Thread(target=watch, name="seqdance-parent-watch", daemon=True).start()


def _run_serial(todo: Sequence[ManifestEntry], settings: BuildSettings, on_result: OnResult) -> None:
    for entry in todo:
        on_result(compute_entry(entry, settings))


def _run_processes(
    todo: Sequence[ManifestEntry], settings: BuildSettings, on_result: OnResult, workers: int, threads: int,
    journal: Journal,
) -> None:
    """A local process pool with bounded in-flight work. When a worker dies (crash, OOM killer) the pool is
    broken for every protein in flight; those are re-run one at a time in a fresh single-worker pool, so only
    the protein that kills its worker again is reported as failed."""
    pending = list(reversed(todo))
    suspects: list[ManifestEntry] = []
    ctx = multiprocessing.get_context("spawn")

    def new_pool(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_exit_with_parent,
                                   initargs=(os.getpid(),))

    while pending or suspects:
        with _thread_limits(threads):
            if suspects:
                entry = suspects.pop()
                with new_pool(1) as pool:
                    try:
                        result = pool.submit(compute_to_journal, entry, settings, str(journal.directory)).result()
                    except BrokenProcessPool:
                        result = EntryResult(entry.name, False,
                                             error="worker process died (killed, crashed or out of memory)")
                on_result(result)
                continue
            with new_pool(workers) as pool:
                running: dict[Any, ManifestEntry] = {}
                try:
                    while pending or running:
                        while pending and len(running) < 2 * workers:
                            future = pool.submit(compute_to_journal, pending[-1], settings, str(journal.directory))
                            running[future] = pending[-1]
                            pending.pop()  # only once submitted: a broken pool raises in submit()
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            result = future.result()  # raises BrokenProcessPool if a worker died
                            del running[future]
                            on_result(result)
                except BrokenProcessPool:
                    suspects.extend(reversed(list(running.values())))
                    log.warning("a worker process died; re-running its %d in-flight protein(s) one at a time",
                                len(running))


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed: pip install 'seqdance[dask]'") from None
    if Path(address).is_file():
        return Client(scheduler_file=address)
    return Client(address)


def _run_dask(todo: Sequence[ManifestEntry], settings: BuildSettings, on_result: OnResult, address: str) -> None:
    """Submit to a dask.distributed scheduler (address or scheduler file); results come back here."""
    from distributed import as_completed

    client = _dask_client(address)
    try:
        n_threads = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        window = 2 * n_threads
        pending = list(reversed(todo))
        names: dict[str, str] = {}
        queue = as_completed()
        for _ in range(min(window, len(pending))):
            entry = pending.pop()
            future = client.submit(compute_entry, entry, settings, pure=False)
            names[future.key] = entry.name
            queue.add(future)
        for future in queue:
            try:
                result = future.result()
            except Exception as exc:  # a worker died (KilledWorker) or the task could not run
                result = EntryResult(names[future.key], False, error=f"{type(exc).__name__}: {exc}")
            future.release()
            on_result(result)
            if pending:
                entry = pending.pop()
                nxt = client.submit(compute_entry, entry, settings, pure=False)
                names[nxt.key] = entry.name
                queue.add(nxt)
    finally:
        client.close()


# --- the build ---------------------------------------------------------------------------------------

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

    @property
    def proteins_per_s(self) -> float:
        return self.computed / self.compute_seconds if self.compute_seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.store}: {self.computed} computed, {self.skipped} already done, {self.failed} failed "
                f"of {self.total}; {self.proteins_per_s:.2f} proteins/s over {self.compute_seconds:.1f} s "
                f"({self.backend}), fold {self.fold_seconds:.1f} s")


def journal_dir(store: Path) -> Path:
    return store.with_name(store.name + ".journal")


def failures_path(store: Path) -> Path:
    return store.with_suffix(".failures.csv")


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Exclusive lock on ``STORE.lock`` (released by the kernel if this process dies)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    lock = store.with_name(store.name + ".lock")
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another process is building {store} (lock {lock} is held)") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _clean_store_temps(store: Path) -> None:
    for tmp in store.parent.glob(f".{store.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def _record(entry: ManifestEntry, result: EntryResult) -> dict[str, Any]:
    return {
        "name": entry.name, "sequence": result.sequence, "source": entry.source, "group": entry.group,
        "kind": entry.kind, "label": entry.label, "order": entry.row, "provenance": result.provenance,
    }


def build_store(
    manifest: str | os.PathLike[str] | Sequence[ManifestEntry],
    output: str | os.PathLike[str],
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    scheduler: str | None = None,
    frequency: str = "reference",
    max_residues: int | None = None,
    missing_hydrogens: str = "error",
    compression: str | None = "auto",
    threads_per_worker: int | None = None,
    fold_every: int = 0,
    progress: bool = False,
) -> BuildReport:
    """Compute every protein of a manifest not yet in ``output`` and fold them into the store.

    ``workers``: 0 computes in this process, N ≥ 1 uses N local worker processes; ``scheduler``: a
    dask.distributed scheduler address (or scheduler file) instead. ``shard=(i, N)`` builds only the proteins
    of shard i (by a hash of the name) — write each shard to its own store and combine them with
    :func:`merge_stores`. ``frequency``: interaction frequency mode of MD entries (DESIGN §3.8).
    ``fold_every``: also fold the journal into the store after every this many computed proteins (bounds the
    journal's disk use on long builds; each fold copies the store once); 0 folds only at the end.
    """
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {FREQUENCIES}, not {frequency!r}")
    if missing_hydrogens not in ("error", "skip"):
        raise ValueError(f"missing_hydrogens must be 'error' or 'skip', not {missing_hydrogens!r}")
    if workers < 0:
        raise ValueError("workers must be ≥ 0")
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
    settings = BuildSettings(frequency=frequency, max_residues=max_residues, missing_hydrogens=missing_hydrogens)
    report = BuildReport(store=output, total=len(entries))

    with store_lock(output):
        _clean_store_temps(output)
        journal = Journal(journal_dir(output))
        journal.clean()
        stored = _stored_rows(output)
        _check_frequency(output, stored, frequency)
        journaled = journal.records()
        by_name = {e.name: e for e in entries}

        def complete(entry: ManifestEntry) -> bool:
            spec = entry.spec()
            if entry.name in journaled and journaled[entry.name][1]["provenance"].get("spec") == spec:
                return _same_frequency(journaled[entry.name][1], frequency)
            return entry.name in stored and stored[entry.name]["provenance"].get("spec") == spec

        todo = [e for e in entries if not complete(e)]
        report.skipped = len(entries) - len(todo)

        build_meta = {
            "manifest": str(manifest_path) if manifest_path else None,
            "manifest_sha256": sha256_file(manifest_path) if manifest_path else None,
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "settings": {"frequency": frequency, "max_residues": max_residues, "missing_hydrogens": missing_hydrogens},
        }

        def fold(final: bool) -> None:
            nonlocal stored
            started = time.perf_counter()
            _fold(output, journal, journaled, stored, by_name, frequency, build_meta, compression, final=final)
            journaled.clear()
            stored = _stored_rows(output)
            report.fold_seconds += time.perf_counter() - started

        failures: list[dict[str, Any]] = []
        since_fold = 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc="build", unit="protein")

        def on_result(result: EntryResult) -> None:
            nonlocal since_fold
            entry = by_name[result.name]
            if result.ok:
                record = _record(entry, result)
                if result.residue is not None:  # arrays came back (in-process, Dask): journal them here
                    journal.write(record, result.residue, result.pair)  # type: ignore[arg-type]
                journaled[entry.name] = (journal.path_for(entry.name), record)
                report.computed += 1
                since_fold += 1
                if fold_every and since_fold >= fold_every:
                    fold(final=False)
                    since_fold = 0
            else:
                failures.append({"name": entry.name, "source": entry.source, "kind": entry.kind,
                                 "error": result.error, "seconds": round(result.seconds, 3)})
                report.failed += 1
                log.info("%s failed: %s", entry.name, result.error)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(failed=report.failed)

        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // max(1, workers))
        started = time.perf_counter()
        try:
            if not todo:
                report.backend = "none"
            elif scheduler:
                report.backend = f"dask ({scheduler})"
                _run_dask(todo, settings, on_result, scheduler)
            elif workers == 0:
                report.backend = "serial"
                _run_serial(todo, settings, on_result)
            else:
                report.backend = f"{workers} local worker process(es)"
                journal.directory.mkdir(parents=True, exist_ok=True)
                _run_processes(todo, settings, on_result, workers, threads, journal)
        finally:
            if bar is not None:
                bar.close()
        report.compute_seconds = time.perf_counter() - started - report.fold_seconds
        fold(final=True)
        report.failures = failures
        _write_failures(output, failures)
    return report


def _stored_rows(output: Path) -> dict[str, dict[str, Any]]:
    if not output.exists():
        return {}
    with DynamicsStore.open(output) as store:
        if store.released:
            raise ValueError(f"{output} is a released-layout file; build into a new store and merge")
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
            raise ValueError(
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
) -> None:
    """Write journal + still-valid stored proteins into a new store file, rename it into place, then delete
    the folded journal entries (and, when ``final``, the emptied journal folder). Skipped when nothing would
    change."""
    plan: list[tuple[int, str, str]] = []  # (order, name, where)
    for name, (_, record) in journaled.items():
        plan.append((int(record["order"]), name, "journal"))
    for name, row in stored.items():
        if name in journaled:
            continue
        entry = manifest.get(name)
        if entry is not None and row["provenance"].get("spec") != entry.spec():
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
        return
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


# --- merge -------------------------------------------------------------------------------------------

def merge_stores(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    compression: str | None = "auto",
    progress: bool = False,
) -> int:
    """Combine stores (e.g. the shards of a job array) into one; proteins ordered by their build order, then
    name. Refuses duplicate names and mixed MD frequency modes. Returns the number of proteins written."""
    output = Path(output)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("nothing to merge: give at least one store")
    if any(p.resolve() == output.resolve() for p in paths):
        raise ValueError(f"the merge output {output} is also an input; write to a new file")
    for p in paths:
        if journal_dir(p).is_dir() and any(journal_dir(p).glob("*.npz")):
            raise ValueError(f"{p} has unfolded journal entries in {journal_dir(p)}: re-run its build to finish it")
    stores = [DynamicsStore.open(p) for p in paths]
    try:
        frequencies = {s.metadata.get("frequency") for s in stores if (s.index["kind"] == "md").any()}
        frequencies.discard(None)
        if len(frequencies) > 1:
            raise ValueError(f"cannot merge stores with different MD frequency modes: {sorted(frequencies)}")
        plan: list[tuple[int, str, int]] = []
        owner: dict[str, Path] = {}
        for k, store in enumerate(stores):
            orders = store.index["order"] if "order" in store.index else range(len(store))
            for name, order in zip(store.index["name"], orders):
                if name in owner:
                    raise ValueError(f"protein {name!r} is in both {owner[name]} and {store.path}")
                owner[name] = store.path
                plan.append((int(order), name, k))
        plan.sort()
        metadata = {
            "frequency": next(iter(frequencies)) if frequencies else None,
            "merged_from": [{"path": str(s.path), "proteins": len(s)} for s in stores],
            "build": stores[0].metadata.get("build"),
            "versions": software_versions(),
        }
        iterator: Any = plan
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(plan, desc="merge", unit="protein")
        with store_lock(output), StoreWriter(output, metadata=metadata, compression=compression) as writer:
            for order, name, k in iterator:
                writer.copy_from(stores[k], name, order=order)
    finally:
        for s in stores:
            s.close()
    with DynamicsStore.open(output) as merged:
        merged.export_index(index_csv_path(output))
    return len(plan)
