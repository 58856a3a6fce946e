"""The dynamics dataset store: one HDF5 file in the released layout, plus our own metadata.

Layout (docs/design.md#dataset-layout), readable by the reference training code unchanged::

    /{name}_res_feature     float32 (T, 47 | 3)        T = tokens: <cls> residues <eos> (+ <eos><cls> linkers)
    /{name}_pair_feature    float32 (T, T, 10 | 3)     MASK_VALUE (-1) at special / masked positions
    /seqdance               group, attributes: format, format_version, frequency, versions, build, split, created
    /seqdance/index/*       one row per protein: name, modify_seq, source, group, label, kind, length, order,
                            provenance (JSON: input files + SHA-256, feature options, per-protein scales)

Feature datasets are chunked (64×64 tokens for pairs) and compressed, so reading one protein — or one crop of
it — touches only that protein's chunks. Every chunk carries a Fletcher-32 checksum that HDF5 verifies on each
read, so damaged bytes are an error (found by ``dataset check``) instead of silently wrong targets, compressed or
not. Non-finite targets are never written. The released dataset itself (no ``/seqdance`` group, unchunked
datasets, index in a separate CSV with ``name, modify_seq, source, label``) is read through the same class.
Files are only ever written whole, into a temporary file that is renamed into place (:class:`StoreWriter`), so
a killed writer never leaves a store that looks complete.

A store is one self-contained file: a soft or external link (which HDF5 would follow into another place or another
file, or fail on when broken) is refused when the store is opened, a virtual dataset (values mapped from other
files) when it is read, each naming the dataset (:func:`refuse_links`, :func:`plain_dataset`).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import pandas as pd

from seqdance import tokenizer
from seqdance.errors import InputError, NonFiniteError, NotFoundError, SeqdanceError, UnsafeFileError
from seqdance.io_utils import atomic_path, read_csv_table
from seqdance.schema import GROUP_KIND, kind_of_stored_width, nonfinite_summary, source_group, stored_width

T = TypeVar("T")

FORMAT_NAME = "seqdance-store"
FORMAT_VERSION = 1
META_GROUP = "seqdance"
INDEX_GROUP = f"{META_GROUP}/index"
RES_SUFFIX = "_res_feature"
PAIR_SUFFIX = "_pair_feature"
#: Columns of the released index CSV, in its order.
RELEASED_COLUMNS: tuple[str, ...] = ("name", "modify_seq", "source", "label")
#: Labels are stored as fixed-width bytes so that ``dataset split`` can rewrite them in place.
LABEL_WIDTH = 16
DEFAULT_LABEL = "train"
PAIR_CHUNK = 64
COMPRESSIONS: tuple[str | None, ...] = ("auto", "gzip", "lzf", None)
#: "auto" compresses a dataset when gzip level 1 saves at least this fraction on its first values.
AUTO_MIN_SAVING = 0.25
AUTO_SAMPLE_VALUES = 1 << 18
RESIDUE_CHUNK = 1024
LINKER_TEXT = tokenizer.LINKER_TEXT


def res_key(name: str) -> str:
    return f"{name}{RES_SUFFIX}"


def pair_key(name: str) -> str:
    return f"{name}{PAIR_SUFFIX}"


def to_modify_seq(sequence: str) -> str:
    """Released ``modify_seq`` form of a ``:``-joined sequence (chains joined by ``<eos><cls>``)."""
    return sequence.replace(tokenizer.CHAIN_SEPARATOR, LINKER_TEXT)


def from_modify_seq(modify_seq: str) -> str:
    """Our ``:``-joined form of a released ``modify_seq``."""
    return modify_seq.replace(LINKER_TEXT, tokenizer.CHAIN_SEPARATOR)


def index_csv_path(store_path: str | os.PathLike[str]) -> Path:
    """The released-style index CSV written beside a store: ``data.h5`` -> ``data.csv``."""
    return Path(store_path).with_suffix(".csv")


def check_finite_targets(name: str, residue: np.ndarray, pair: np.ndarray, kind: str) -> None:
    """Refuse stored targets with NaN or infinite values, naming the protein and the properties (they would train
    a NaN model: a store never holds them)."""
    found = [t for t in (nonfinite_summary(residue, "residue", kind),  # type: ignore[arg-type]
                         nonfinite_summary(pair, "pair", kind)) if t]  # type: ignore[arg-type]
    if found:
        raise NonFiniteError(f"protein {name!r}: non-finite target values ({'; '.join(found)}); not stored")


def refuse_links(fh: h5py.File | h5py.Group, path: str | os.PathLike[str], what: str = "a store") -> None:
    """Refuse an HDF5 file that holds a soft or external link (an :class:`~seqdance.errors.UnsafeFileError` naming the
    first): its values would come from another place or file, silently, or the read would fail on a broken link.
    Reads link records only, no dataset is opened: about 9 µs per link (~1 s for the released store's 128,000)."""
    found: list[bytes] = []

    def visit(name: bytes, info: Any) -> int | None:
        if info.type != h5py.h5l.TYPE_HARD:
            found.append(name)
            return 1  # stop at the first
        return None

    fh.id.links.visit(visit, info=True)
    if not found:
        return
    name = found[0].decode("utf-8", "replace")
    link = fh.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        target = f"an external link to {link.filename}:{link.path}"
    elif isinstance(link, h5py.SoftLink):
        target = f"a soft link to {link.path}" + ("" if link.path in fh else " (broken: nothing is there)")
    else:
        target = "a user-defined link"
    raise UnsafeFileError(f"{path}: {name!r} is {target}; {what} must be one self-contained file of datasets "
                          "(rewrite it without links)")


def plain_dataset(fh: h5py.File | h5py.Group, key: str, path: str | os.PathLike[str],
                  what: str = "a store") -> h5py.Dataset:
    """The dataset ``key``; a virtual dataset (values mapped from other datasets or files) is an
    :class:`~seqdance.errors.UnsafeFileError` naming it."""
    ds = fh[key]
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"{path}: {key!r} is not a dataset")
    if ds.is_virtual:
        sources = sorted({m.file_name for m in ds.virtual_sources()})
        raise UnsafeFileError(f"{path}: dataset {key!r} is a virtual dataset (its values come from "
                              f"{', '.join(sources) or 'elsewhere'}); {what} must be one self-contained file")
    return ds


def check_name(name: str) -> str:
    """A protein name usable as an HDF5 dataset prefix (non-empty, no '/', no surrounding whitespace)."""
    if not isinstance(name, str) or not name or name != name.strip() or "/" in name:
        raise InputError(f"protein name {name!r} is not usable: it must be non-empty, without '/' "
                         "or surrounding spaces")
    return name


@dataclass
class StoredProtein:
    """One protein's stored targets (token-aligned, transformed) and its index row."""

    name: str
    sequence: str  # one-letter codes, chains joined by ':'
    source: str
    group: str  # md | idr | nma
    label: str  # train | test | ...
    kind: str  # md | nma: which target block the tensors hold
    residue: np.ndarray  # (T, 47 | 3) float32
    pair: np.ndarray  # (T, T, 10 | 3) float32
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Number of residues (all chains)."""
        return len(self.sequence.replace(tokenizer.CHAIN_SEPARATOR, ""))

    @property
    def modify_seq(self) -> str:
        return to_modify_seq(self.sequence)

    def features(self) -> dict[str, Any]:
        """Residue-aligned raw features (inverse transforms; see
        :func:`~seqdance.store.transforms.targets_to_features`)."""
        from seqdance.store.transforms import targets_to_features

        return targets_to_features(
            self.residue, self.pair, self.sequence, kind=self.kind,  # type: ignore[arg-type]
            scales=self.provenance.get("scales"),
        )


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read_index_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index CSV not found: {path}")
    df = read_csv_table(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("name", "modify_seq", "source") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: index CSV lacks column(s) {missing}; it needs name, modify_seq, source (and label)")
    if "label" not in df.columns:
        df["label"] = DEFAULT_LABEL
    df["label"] = df["label"].replace("", DEFAULT_LABEL)
    dup = df["name"][df["name"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: duplicate protein name(s) in the index: {sorted(set(dup))[:5]}")
    if "group" not in df.columns:
        groups = []
        for row, (name, source) in enumerate(zip(df["name"], df["source"])):
            try:
                groups.append(source_group(source))
            except ValueError as exc:
                raise InputError(f"{path}: row {row + 2} ({name}): {exc}") from None
        df["group"] = groups
    if "kind" not in df.columns:
        df["kind"] = [GROUP_KIND[g] for g in df["group"]]
    return df.reset_index(drop=True)


class DynamicsStore:
    """Read access to a store (ours or the released one). Reading one protein costs O(that protein).

    Safe to pass to DataLoader workers: the HDF5 handle is opened lazily in each process.
    """

    def __init__(self, path: str | os.PathLike[str], *, index: str | os.PathLike[str] | pd.DataFrame | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"store not found: {self.path}")
        self._handle: h5py.File | None = None
        self._pid = -1
        try:
            fh = self._file
        except OSError as exc:
            raise InputError(f"{self.path} is not a readable HDF5 file ({exc})") from None
        try:
            refuse_links(fh, self.path)
        except UnsafeFileError:
            self.close()
            raise
        self.released = META_GROUP not in fh
        if isinstance(index, pd.DataFrame):
            self._index = index.reset_index(drop=True).copy()
        elif index is not None:
            self._index = _read_index_csv(index)
        elif not self.released:
            self._index = self._read_internal_index(fh)
        else:
            sibling = index_csv_path(self.path)
            if not sibling.is_file():
                raise InputError(
                    f"{self.path} has no seqdance index: give the released index CSV (name, modify_seq, source, "
                    f"label) with index=..., or place it beside the store as {sibling.name}"
                )
            self._index = _read_index_csv(sibling)
        self._row = {n: i for i, n in enumerate(self._index["name"])}
        self._records: list[dict[str, Any]] | None = None
        self.metadata: dict[str, Any] = self._read_metadata(fh)

    # --- opening / lifetime ------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike[str], mode: str = "r", *,
        index: str | os.PathLike[str] | pd.DataFrame | None = None
    ) -> DynamicsStore:
        """Open a store for reading (``mode="r"``; stores are written with :class:`StoreWriter`)."""
        if mode != "r":
            raise InputError(f"DynamicsStore.open supports mode='r' only (got {mode!r}); write stores with StoreWriter")
        return cls(path, index=index)

    @property
    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> DynamicsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = -1
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # --- index / metadata --------------------------------------------------------------------------
    @staticmethod
    def _read_internal_index(fh: h5py.File) -> pd.DataFrame:
        grp = fh[INDEX_GROUP]
        data: dict[str, Any] = {}
        for col in ("name", "modify_seq", "source", "label", "group", "kind", "provenance"):
            data[col] = _decode(grp[col][()]) if col in grp else []
        data["label"] = [s.rstrip("\x00") for s in data["label"]]
        data["length"] = grp["length"][()].astype(np.int64)
        data["order"] = grp["order"][()].astype(np.int64)
        return pd.DataFrame(data)

    @staticmethod
    def _read_metadata(fh: h5py.File) -> dict[str, Any]:
        if META_GROUP not in fh:
            return {"format": "released"}
        meta: dict[str, Any] = {}
        for key, value in fh[META_GROUP].attrs.items():
            text = value.decode() if isinstance(value, bytes) else value
            if isinstance(text, str) and text[:1] in "{[":
                try:
                    text = json.loads(text)
                except json.JSONDecodeError:
                    pass
            meta[key] = text.item() if isinstance(text, np.generic) else text
        return meta

    @property
    def index(self) -> pd.DataFrame:
        """One row per protein: name, modify_seq, source, label (+ group, kind and, for our stores, length, order)."""
        return self._index

    @property
    def names(self) -> list[str]:
        return list(self._index["name"])

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def row(self, name: str) -> Mapping[str, Any]:
        """The index row of one protein (a dict; built once, so per-protein lookups stay cheap)."""
        if name not in self._row:
            raise NotFoundError(f"protein {name!r} is not in store {self.path}")
        if self._records is None:
            self._records = self._index.to_dict("records")
        return self._records[self._row[name]]

    def provenance(self, name: str) -> dict[str, Any]:
        text = self.row(name).get("provenance", "")
        return json.loads(text) if isinstance(text, str) and text else {}

    def export_index(self, path: str | os.PathLike[str]) -> Path:
        """Write the released-style index CSV (name, modify_seq, source, label) atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self._index.loc[:, list(RELEASED_COLUMNS)].to_csv(tmp, index=False)
        return path

    # --- reading -----------------------------------------------------------------------------------
    def dataset_names(self, name: str) -> tuple[str, str]:
        return res_key(name), pair_key(name)

    def read_arrays(self, name: str, window: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stored ``(residue, pair)`` float32 arrays; ``window=(start, stop)`` reads only those token positions."""
        fh = self._file
        rk, pk = self.dataset_names(name)
        if rk not in fh or pk not in fh:
            missing = rk if rk not in fh else pk
            raise NotFoundError(f"store {self.path} has no dataset {missing!r} for protein {name!r}")
        sel = slice(None) if window is None else slice(int(window[0]), int(window[1]))
        residue = self.dataset(rk)[sel]
        pair = self.dataset(pk)[sel, sel]
        return residue.astype(np.float32, copy=False), pair.astype(np.float32, copy=False)

    def read(self, name: str, window: tuple[int, int] | None = None) -> StoredProtein:
        """Targets and index row of one protein (``window``: token range to read, for crops of long proteins)."""
        row = self.row(name)
        residue, pair = self.read_arrays(name, window)
        kind = kind_of_stored_width("residue", residue.shape[-1])
        provenance = self.provenance(name)
        return StoredProtein(
            name=name,
            sequence=from_modify_seq(str(row["modify_seq"])),
            source=str(row["source"]),
            group=str(row["group"]),
            label=str(row["label"]),
            kind=kind,
            residue=residue,
            pair=pair,
            provenance=provenance,
        )

    def shapes(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dataset shapes of one protein without reading its values."""
        rk, pk = self.dataset_names(name)
        return tuple(self.dataset(rk).shape), tuple(self.dataset(pk).shape)

    def dataset(self, key: str) -> h5py.Dataset:
        """One dataset of the file (a virtual dataset is refused, naming it)."""
        return plain_dataset(self._file, key, self.path)


def software_versions() -> dict[str, str]:
    """Versions of the software that shapes stored values (recorded in store metadata)."""
    import platform

    import scipy

    import seqdance

    versions = {
        "seqdance": seqdance.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }
    from importlib import metadata

    for dist in ("mdtraj", "gemmi", "MDAnalysis"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # optional: only what is installed is recorded
            continue
    return versions


class StoreWriteError(SeqdanceError, OSError):
    """Writing a store failed (disk full, file too large, I/O error); the previous store file is unchanged."""


_NATIVE_ERROR = re.compile(r"error message = '([^']+)'|\[Errno \d+\] ([^\n(]+)")


def write_isolated(output: str | os.PathLike[str], func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` — a function that writes the store ``output`` with :class:`StoreWriter` — in
    a child process, so that HDF5 failing on a full disk (it may crash instead of raising) costs a clear
    :class:`StoreWriteError` instead of a segfault. Half-written temporary files are removed; ``output`` stays the
    previous complete store (or absent). User errors (:class:`SeqdanceError`) raised by ``func`` pass through."""
    import shutil

    from seqdance.parallel import call_in_child

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log_path = output.with_name(f".{output.name}.writer.log")
    try:
        return call_in_child(func, *args, log_path=log_path, **kwargs)
    except SeqdanceError:
        raise
    except (OSError, RuntimeError, MemoryError) as exc:
        for tmp in output.parent.glob(f".{output.name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        found = _NATIVE_ERROR.search(text + "\n" + str(exc))
        reason = next((g for g in found.groups() if g), "").strip() if found else ""
        free = shutil.disk_usage(output.parent).free
        raise StoreWriteError(
            f"writing {output} failed ({reason or ' '.join(str(exc).split()) or type(exc).__name__}; "
            f"{free / 1e6:.1f} MB free on its disk); nothing was half-written: {output} is the previous complete "
            "store (or absent). Free some space and run the command again: finished work is kept"
        ) from None
    finally:
        log_path.unlink(missing_ok=True)


class StoreWriter:
    """Write a new store file whole: into a temporary file, renamed onto ``path`` by :meth:`close`.

    ``compression``: ``"auto"`` (default: gzip level 1 for each dataset where a trial on a sample saves at
    least 25%, otherwise none), ``"gzip"`` (level ``compression_opts``, default 1), ``"lzf"`` or ``None``.
    MD targets (mostly-zero interaction maps) shrink ~10x with gzip level 1; dense NMA correlation maps only
    ~10%, and reading compressed data costs ~5-10x more CPU than reading raw chunks, so "auto" compresses
    where it pays (benchmarks/bench_dataset_build.py). Level 1 without byte shuffle reads fastest of the
    gzip settings.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        metadata: Mapping[str, Any] | None = None,
        compression: str | None = "auto",
        compression_opts: int | None = 1,
    ):
        self.path = Path(path)
        if compression not in COMPRESSIONS:
            raise InputError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
        self._auto = compression == "auto"
        self._filters: dict[str, Any] = {}
        if compression in ("gzip", "auto"):
            self._filters = {"compression": "gzip", "compression_opts": compression_opts or 1}
        elif compression == "lzf":
            self._filters = {"compression": "lzf"}
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._fh = h5py.File(self._tmp, "w")
        self._rows: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._closed = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __len__(self) -> int:
        return len(self._rows)

    def _chunks(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 2:
            return (max(1, min(shape[0], RESIDUE_CHUNK)), shape[1])
        edge = max(1, min(shape[0], PAIR_CHUNK))
        return (edge, edge, shape[2])

    def _filters_for(self, data: np.ndarray) -> dict[str, Any]:
        if not self._auto:
            return self._filters
        sample = data.reshape(-1)[:AUTO_SAMPLE_VALUES].tobytes()
        saving = 1 - len(zlib.compress(sample, 1)) / max(1, len(sample))
        return self._filters if saving >= AUTO_MIN_SAVING else {}

    def _create(self, key: str, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data, dtype=np.float32)
        # fletcher32: a checksum per chunk, verified on every read, so flipped bytes are found (dataset check)
        self._fh.create_dataset(key, data=data, chunks=self._chunks(data.shape), fletcher32=True,
                                **self._filters_for(data))

    def _raw_copy_ok(self, ds: h5py.Dataset) -> bool:
        """Whether a source dataset's chunks can be copied as they are (same dtype, chunks and filters)."""
        if ds.dtype != np.float32 or ds.chunks != self._chunks(ds.shape) or ds.shuffle or not ds.fletcher32:
            return False
        gzip1 = ds.compression == "gzip" and ds.compression_opts == self._filters.get("compression_opts")
        if self._auto:
            return ds.compression is None or gzip1
        if self._filters.get("compression") == "gzip":
            return gzip1
        return ds.compression == self._filters.get("compression")

    def _check_new(self, name: str) -> None:
        check_name(name)
        if name in self._names:
            raise InputError(f"protein {name!r} is written twice to {self.path}")

    def add(
        self,
        protein: StoredProtein,
        *,
        order: int | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one protein (its arrays must already be the stored targets)."""
        self._check_new(protein.name)
        n_tokens = tokenizer.encode(protein.sequence, protein.name).ids.shape[0]
        want_res = (n_tokens, stored_width("residue", protein.kind))  # type: ignore[arg-type]
        want_pair = (n_tokens, n_tokens, stored_width("pair", protein.kind))  # type: ignore[arg-type]
        if protein.residue.shape != want_res or protein.pair.shape != want_pair:
            raise InputError(
                f"protein {protein.name!r}: targets have shapes {protein.residue.shape}/{protein.pair.shape}; "
                f"the sequence ({n_tokens} tokens, kind {protein.kind}) needs {want_res}/{want_pair}"
            )
        check_finite_targets(protein.name, protein.residue, protein.pair, protein.kind)
        self._create(res_key(protein.name), protein.residue)
        self._create(pair_key(protein.name), protein.pair)
        self._append_row(protein, order, provenance if provenance is not None else protein.provenance)

    def copy_from(self, store: DynamicsStore, name: str, *, order: int | None = None, label: str | None = None,
                  verify: bool = False) -> None:
        """Copy one protein from another store; chunks are copied raw when their layout already matches.

        ``verify`` reads the values first (checksums verified where the source has them) and refuses non-finite
        ones (:class:`~seqdance.errors.NonFiniteError`); unreadable data raises ``OSError``. Nothing of the
        protein is written then.
        """
        self._check_new(name)
        src = store._file
        keys = store.dataset_names(name)
        values: dict[str, np.ndarray] = {}
        if verify:
            values = {key: store.dataset(key)[()] for key in keys}
            check_finite_targets(name, values[keys[0]], values[keys[1]],
                                 kind_of_stored_width("residue", values[keys[0]].shape[-1]))
        for key in keys:
            ds = store.dataset(key)
            if self._raw_copy_ok(ds):
                src.copy(ds, self._fh, name=key)
            else:
                self._create(key, values[key] if key in values else ds[()])
        row = store.row(name)
        protein = StoredProtein(
            name=name, sequence=from_modify_seq(str(row["modify_seq"])), source=str(row["source"]),
            group=str(row["group"]), label=label if label is not None else str(row["label"]),
            kind=kind_of_stored_width("residue", src[res_key(name)].shape[-1]),
            residue=np.empty(0), pair=np.empty(0),
        )
        if order is None and "order" in row:
            order = int(row["order"])
        self._append_row(protein, order, store.provenance(name))

    def _append_row(self, protein: StoredProtein, order: int | None, provenance: Mapping[str, Any]) -> None:
        label = protein.label or DEFAULT_LABEL
        if len(label.encode("utf-8")) > LABEL_WIDTH:
            raise InputError(f"protein {protein.name!r}: label {label!r} is longer than {LABEL_WIDTH} bytes")
        if protein.group not in GROUP_KIND:
            raise InputError(f"protein {protein.name!r}: unknown source group {protein.group!r}")
        self._names.add(protein.name)
        self._rows.append({
            "name": protein.name,
            "modify_seq": to_modify_seq(protein.sequence),
            "source": protein.source,
            "group": protein.group,
            "label": label,
            "kind": protein.kind,
            "length": protein.length,
            "order": len(self._rows) if order is None else int(order),
            "provenance": json.dumps(dict(provenance), sort_keys=True, default=str),
        })

    def _write_index(self) -> None:
        grp = self._fh.require_group(INDEX_GROUP)
        text = h5py.string_dtype("utf-8")
        rows = self._rows
        for col in ("name", "modify_seq", "source", "group", "kind", "provenance"):
            grp.create_dataset(col, data=np.array([r[col] for r in rows], dtype=object), dtype=text)
        grp.create_dataset(
            "label", data=np.array([r["label"].encode("utf-8") for r in rows], dtype=f"S{LABEL_WIDTH}")
        )
        grp.create_dataset("length", data=np.array([r["length"] for r in rows], dtype=np.int64))
        grp.create_dataset("order", data=np.array([r["order"] for r in rows], dtype=np.int64))
        meta = self._fh[META_GROUP]
        attrs = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **self.metadata}
        attrs.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        attrs.setdefault("versions", software_versions())
        for key, value in attrs.items():
            if value is None:
                continue
            meta.attrs[key] = (json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list))
                               else value)

    def close(self) -> Path:
        """Write the index and metadata, flush, and atomically put the file in place."""
        if self._closed:
            return self.path
        self._write_index()
        self._fh.flush()
        self._fh.close()
        self._closed = True
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; ``path`` is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            self._fh.close()
        finally:
            try:
                self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except RuntimeError:
                pass
