"""The build journal: one atomic ``.npz`` per finished protein, beside the store, until it is folded in.

A protein counts as complete exactly when its entry exists: each entry (targets *and* index row, as JSON) is
written under a temporary name and renamed, so it exists whole or not at all. Only the builder folds entries
into the store and deletes them afterwards (:mod:`seqdance.store.builder`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path

log = logging.getLogger(__name__)

#: What reading a damaged entry raises (truncated or foreign file, missing or garbled record); anything else is a bug.
_DAMAGED = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def journal_dir(store: Path) -> Path:
    """The journal folder of a store: ``STORE.journal/``."""
    return store.with_name(store.name + ".journal")


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
            except _DAMAGED as exc:  # cannot happen with atomic writes unless the disk is damaged
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


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Exclusive lock on ``STORE.lock`` (released by the kernel if this process dies), removed on exit.

    The holder deletes the lock file before releasing it; a process that opened the old file in the meantime
    sees that its file is no longer the one at the path and tries again, so two processes never both hold it.
    """
    store.parent.mkdir(parents=True, exist_ok=True)
    lock = store.with_name(store.name + ".lock")
    for _ in range(100):
        fh = open(lock, "a+")  # closed below, after unlocking
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise InputError(f"another process is building {store} (lock {lock} is held)") from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fh.fileno()), current):
            break
        fh.close()  # the previous holder removed this file after we opened it: lock the new one
    else:
        raise InputError(f"could not lock {lock}: it keeps being replaced")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def clean_store_temps(store: Path) -> None:
    """Delete half-written store files (``.STORE.*.tmp``) a killed fold left beside the store."""
    for tmp in store.parent.glob(f".{store.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
