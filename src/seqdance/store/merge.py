"""Combine stores (the shards of a job array, or stores built separately) into one new store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqdance.errors import InputError, NonFiniteError
from seqdance.store.hdf5 import DynamicsStore, StoreWriter, index_csv_path, software_versions, write_isolated
from seqdance.store.journal import journal_dir, store_lock


def merge_stores(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    compression: str | None = "auto",
    progress: bool = False,
    overwrite: bool = False,
) -> int:
    """Combine stores (e.g. the shards of a job array) into one; proteins ordered by their build order, then
    name. Refuses duplicate names, mixed MD frequency modes, an existing output (unless ``overwrite``) and
    proteins whose values are non-finite or unreadable (each input value is read and checked; all offending
    proteins are listed and nothing is written). Returns the number of proteins written."""
    output = Path(output)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("nothing to merge: give at least one store")
    if any(p.resolve() == output.resolve() for p in paths):
        raise InputError(f"the merge output {output} is also an input; write to a new file")
    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists; merging writes a new store (choose another output, or pass "
                         "--overwrite to replace it)")
    for p in paths:
        if journal_dir(p).is_dir() and any(journal_dir(p).glob("*.npz")):
            raise InputError(f"{p} has unfolded journal entries in {journal_dir(p)}: re-run its build to finish it")
    stores = [DynamicsStore.open(p) for p in paths]
    try:
        frequencies = {s.metadata.get("frequency") for s in stores if (s.index["kind"] == "md").any()}
        frequencies.discard(None)
        if len(frequencies) > 1:
            raise InputError(f"cannot merge stores with different MD frequency modes: {sorted(frequencies)}")
        plan: list[tuple[int, str, int]] = []
        owner: dict[str, Path] = {}
        for k, store in enumerate(stores):
            orders = store.index["order"] if "order" in store.index else range(len(store))
            for name, order in zip(store.index["name"], orders):
                if name in owner:
                    raise InputError(f"protein {name!r} is in both {owner[name]} and {store.path}")
                owner[name] = store.path
                plan.append((int(order), name, k))
        plan.sort()
        metadata = {
            "frequency": next(iter(frequencies)) if frequencies else None,
            "merged_from": [{"path": str(s.path), "proteins": len(s)} for s in stores],
            "build": stores[0].metadata.get("build"),
            "versions": software_versions(),
        }
    finally:
        for s in stores:
            s.close()
    with store_lock(output):
        # in a child process: a full disk makes HDF5 fail (or crash); the output stays as it was
        write_isolated(output, _write_merged, paths, output, plan, metadata, compression, progress)
    return len(plan)


def _write_merged(paths: Sequence[Path], output: Path, plan: Sequence[tuple[int, str, int]],
                  metadata: dict[str, Any], compression: str | None, progress: bool) -> None:
    """Copy the planned proteins into a new store (each one's values read and checked first) and write its index
    CSV; refuses, writing nothing, when any protein is non-finite or unreadable."""
    stores = [DynamicsStore.open(p) for p in paths]
    try:
        iterator: Any = plan
        if progress:
            from tqdm.auto import tqdm

            from seqdance.parallel import terminal_stream

            iterator = tqdm(plan, desc="dataset merge", unit="protein", file=terminal_stream())
        bad: list[str] = []
        with StoreWriter(output, metadata=metadata, compression=compression) as writer:
            for order, name, k in iterator:
                try:
                    writer.copy_from(stores[k], name, order=order, verify=True)
                except (NonFiniteError, OSError) as exc:
                    detail = str(exc) if isinstance(exc, NonFiniteError) else f"unreadable data ({exc})"
                    bad.append(f"{stores[k].path}: {detail}")
            if bad:
                writer.abort()
                shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
                raise InputError(f"nothing merged: {len(bad)} protein(s) cannot be copied: {shown} (run "
                                 "'seqdance dataset check' on the input stores)")
    finally:
        for s in stores:
            s.close()
    with DynamicsStore.open(output) as merged:
        merged.export_index(index_csv_path(output))
