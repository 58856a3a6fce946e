"""Embeddings in one HDF5 file, written resumably: ``embed``'s output and ``probe``'s cache (one format, one code).

Layout of ``OUT.h5``::

    /mean/<key>          (d,)   float32  mean over residues (``residues`` pooling: no special tokens, no chain
                                          linkers); attrs ``id``, ``sequence``, ``length``, ``content``,
                                          ``model_fingerprint``, ``options``; ``kept`` on an entry of a
                                          cropped input (below)
    /mean_all/<key>      (d,)   float32  mean over every token, <cls>/<eos> and linkers included (``all``
                                          pooling, the reference notebook's; :mod:`seqdance.inference.embeddings`)
    /per_residue/<key>   (L, d) float32  per-residue embeddings (only with ``per_residue=True``)
    /index/id, /index/key, /index/sequence (UTF-8 strings), /index/length (int64): one row per entry
    attrs: model, model_fingerprint, embedding_dim, pooling, seqdance_version

``key`` is the file-name-safe form of the id (:func:`seqdance.inference.prediction_io.safe_stem`).

Why parts: an HDF5 file being written when a process is killed can be left unreadable. New entries therefore
go to small part files in ``OUT.h5.parts/`` (each written atomically), and :meth:`EmbeddingWriter.close`
merges the finished file and the parts into a new ``OUT.h5`` that replaces the old one atomically. A run
that is interrupted loses at most the entries not yet in a part; the next run skips every entry already in
``OUT.h5`` or a part whose content matches.

Content: each entry records the model fingerprint and a ``content`` key (a hash of its sequence, the fingerprint
and the options that change values); an entry is reused only when that key matches and its own content checks
out (its sequence, the mean vectors' shapes and, when asked for, a per-residue array of (L, d)). A file that
cannot be read is named in one line (:class:`EmbeddingFileError`), as is one holding a link or a virtual dataset
(values from another file); a writer told ``damaged="recompute"`` warns and recomputes its entries instead.

Cropped inputs: an entry may hold the vectors of a model input that kept only the first ``kept`` residues of its
sequence (fine-tuning cuts sequences to a token limit, see :mod:`seqdance.finetuning.inputs`). Its ``sequence``
and ``length`` stay those of the whole sequence (what its content key hashes, with the options naming the cut);
``kept`` records how many leading residues its per-residue array covers, and its means are over the cropped
input.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from seqdance.errors import InputError, UnsafeFileError
from seqdance.inference.prediction_io import safe_stem
from seqdance.inference.sharding import content_key, text_digest
from seqdance.io_utils import atomic_path
from seqdance.store.hdf5 import plain_dataset, refuse_links

log = logging.getLogger(__name__)

POOLING = ("mean: mean over residues (special tokens and chain linkers excluded); mean_all: mean over every token "
           "(<cls>, chain linkers and <eos> included)")
#: Group of each pooling's vectors.
POOLING_GROUPS: dict[str, str] = {"residues": "mean", "all": "mean_all"}
_STR = h5py.string_dtype("utf-8")


class EmbeddingFileError(InputError):
    """An embeddings file that cannot be read (truncated, not HDF5, or not of this layout); names the file."""


@contextmanager
def open_embedding_file(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open an embeddings file for reading; a file HDF5 cannot open is an :class:`EmbeddingFileError` naming it."""
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise EmbeddingFileError(f"{path}: not a readable embeddings file ({' '.join(str(exc).split())})") from exc
    with handle:
        try:
            refuse_links(handle, path, "an embeddings file")
        except UnsafeFileError as exc:
            raise EmbeddingFileError(str(exc)) from exc
        yield handle


def _dataset(fh: h5py.File, key: str, path: str | os.PathLike[str]) -> h5py.Dataset:
    """A dataset of an embeddings file; a virtual one (values from other files) is an :class:`EmbeddingFileError`."""
    try:
        return plain_dataset(fh, key, path, "an embeddings file")
    except UnsafeFileError as exc:
        raise EmbeddingFileError(str(exc)) from exc


@dataclass(frozen=True)
class EmbeddingEntry:
    """What one entry of an embeddings file holds (read from its attributes and shapes, not its values)."""

    id: str
    key: str
    sequence: str
    length: int
    content: str | None
    fingerprint: str | None
    options: str | None
    mean_shape: tuple[int, ...]
    all_shape: tuple[int, ...] | None
    per_residue_shape: tuple[int, ...] | None
    source: Path
    kept: int | None = None  # leading residues covered, for an entry of a cropped input (see the module docstring)

    @property
    def per_residue(self) -> bool:
        return self.per_residue_shape is not None

    @property
    def n_covered(self) -> int:
        """Residues the entry's per-residue array covers: ``kept`` for a cropped input, else the sequence's."""
        return self.length if self.kept is None else self.kept

    def problem(self, per_residue: bool) -> str | None:
        """Why the entry's own content does not check out (None when it does)."""
        n = len(self.sequence.replace(":", ""))
        if len(self.mean_shape) != 1 or not self.mean_shape[0]:
            return f"its mean embedding has shape {self.mean_shape}"
        if self.all_shape != self.mean_shape:
            return "has no all-token mean of the same size (written by an older seqdance?)"
        if self.length != n:
            return f"records length {self.length} for a sequence of {n} residues"
        if self.kept is not None and not 0 < self.kept <= n:
            return f"records {self.kept} kept residues for a sequence of {n}"
        rows = self.n_covered
        if per_residue and self.per_residue_shape != (rows, self.mean_shape[0]):
            found = "none" if self.per_residue_shape is None else str(self.per_residue_shape)
            return f"has per-residue embeddings of shape {found}, not ({rows}, {self.mean_shape[0]})"
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_entries(path: str | os.PathLike[str]) -> dict[str, EmbeddingEntry]:
    """key -> :class:`EmbeddingEntry` of every entry of an embeddings (or part) file; a file that cannot be read,
    or an entry without its attributes, is an :class:`EmbeddingFileError` naming the file."""
    path = Path(path)
    with open_embedding_file(path) as fh:
        try:
            mean = fh.get("mean", {})
            every = fh.get("mean_all", {})
            per_residue = fh.get("per_residue", {})
            out = {}
            for key in mean:
                for name in ("mean", "mean_all", "per_residue"):
                    if key in fh.get(name, {}):
                        _dataset(fh, f"{name}/{key}", path)
                attrs = mean[key].attrs
                content, fingerprint, options = (attrs.get(k) for k in ("content", "model_fingerprint", "options"))
                kept = attrs.get("kept")
                out[key] = EmbeddingEntry(
                    _text(attrs["id"]), key, _text(attrs["sequence"]), int(attrs["length"]),
                    None if content is None else _text(content), None if fingerprint is None else _text(fingerprint),
                    None if options is None else _text(options),
                    tuple(mean[key].shape), tuple(every[key].shape) if key in every else None,
                    tuple(per_residue[key].shape) if key in per_residue else None, path,
                    None if kept is None else int(kept),
                )
        except EmbeddingFileError:
            raise
        except (KeyError, OSError, ValueError, TypeError, AttributeError) as exc:
            raise EmbeddingFileError(f"{path}: not an embeddings file of this layout ({exc})") from exc
        return out


def entry_fields(sequence: str, fingerprint: str, options: str = "") -> dict[str, str]:
    """What an embedding depends on: the sequence (its digest), the model fingerprint and the value-changing
    options (the content fields of :class:`seqdance.inference.sharded_run.RunItem`)."""
    return {"sequence": text_digest(sequence), "model": fingerprint, "options": options}


def entry_content_key(sequence: str, fingerprint: str, options: str = "") -> str:
    """The content key an entry records: the hash of :func:`entry_fields`."""
    return content_key(entry_fields(sequence, fingerprint, options))


def file_model(path: str | os.PathLike[str]) -> str | None:
    """The model name an embeddings file records (None when it records none)."""
    with open_embedding_file(path) as fh:
        model = fh.attrs.get("model")
        return None if model is None else _text(model)


def _part_order(path: Path) -> tuple[int, str]:
    """Parts are newer by number (``part-<number>-<pid>.h5``): later parts win."""
    number = path.name.split("-")[1] if path.name.count("-") >= 1 else ""
    return (int(number) if number.isdigit() else -1, path.name)


class EmbeddingWriter:
    """Collect embeddings and write them to ``path`` resumably (see the module docstring).

    ``model`` names the model that made the embeddings; mixing models in one file is refused unless
    ``overwrite`` (which starts the file afresh). ``fingerprint`` (:func:`seqdance.inference.fingerprint.
    module_fingerprint`) and ``options`` make reuse depend on content. ``also_done``: other embedding files whose
    matching entries count as done (a sharded run's merged file). ``damaged``: ``"error"`` (a file that cannot
    be read stops the run, naming it) or ``"recompute"`` (warn; its entries are recomputed and the file replaced).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model: str,
        per_residue: bool = False,
        overwrite: bool = False,
        flush_every: int = 256,
        fingerprint: str | None = None,
        options: str = "",
        also_done: Sequence[str | os.PathLike[str]] = (),
        damaged: str = "recompute",
    ) -> None:
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.model = str(model)
        self.per_residue = per_residue
        self.flush_every = max(1, flush_every)
        self.fingerprint = fingerprint
        self.options = options
        self._buffer: list[tuple[str, object, int | None]] = []
        self._damaged: set[Path] = set()
        if overwrite:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._existing: dict[str, EmbeddingEntry] = {}
        extra = [Path(p) for p in also_done if Path(p).is_file()]
        for source in extra + self._sources():
            try:
                found, entries = file_model(source), read_entries(source)
            except EmbeddingFileError as exc:
                if damaged != "recompute":
                    raise
                log.warning("%s; its entries are recomputed", exc)
                self._damaged.add(source)
                continue
            if found is not None and found != self.model:
                raise InputError(
                    f"{source} holds embeddings from model {found!r}, not {self.model!r}; "
                    "write to another file or pass --overwrite"
                )
            self._existing.update(entries)

    def _sources(self) -> list[Path]:
        parts = sorted(self.parts_dir.glob("part-*.h5"), key=_part_order) if self.parts_dir.is_dir() else []
        return [p for p in ([self.path] if self.path.exists() else []) + parts if p not in self._damaged]

    def entry(self, seq_id: str) -> EmbeddingEntry | None:
        """The newest entry found for ``seq_id`` (None when there is none)."""
        entry = self._existing.get(safe_stem(seq_id))
        return entry if entry is not None and entry.id == seq_id else None

    def is_done(self, seq_id: str, sequence: str | None = None) -> bool:
        """Whether ``seq_id`` already has the embeddings this writer was asked for (and, with a fingerprint,
        for this ``sequence``, model and options), its own content checking out."""
        entry = self.entry(seq_id)
        if entry is None or entry.problem(self.per_residue) is not None:
            return False
        if self.fingerprint is None:
            return True
        if sequence is None:
            raise InputError("is_done needs the sequence when the writer has a model fingerprint")
        return entry.sequence == sequence and entry.content == entry_content_key(sequence, self.fingerprint,
                                                                                  self.options)

    def add(self, embedding, key: str | None = None, *, kept: int | None = None) -> None:
        """Queue one :class:`~seqdance.inference.embeddings.Embedding` (stored under ``key``, default its id).

        ``kept``: the embedding is of a cropped input that kept the sequence's first ``kept`` residues (its
        per-residue array has ``kept`` rows; see the module docstring)."""
        self._buffer.append((key or embedding.id, embedding, kept))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered entries to a new part file."""
        if not self._buffer:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        last = max((_part_order(p)[0] for p in self.parts_dir.glob("part-*.h5")), default=-1)
        part = self.parts_dir / f"part-{last + 1:06d}-{os.getpid()}.h5"  # newer than every other part
        with atomic_path(part) as tmp:
            with h5py.File(tmp, "w") as fh:
                fh.attrs["model"] = self.model
                for entry_id, emb, kept in self._buffer:
                    key = safe_stem(entry_id)
                    ds = fh.create_dataset(f"mean/{key}", data=emb.pooled["residues"])
                    fh.create_dataset(f"mean_all/{key}", data=emb.pooled["all"])
                    ds.attrs.update({"id": entry_id, "sequence": emb.sequence, "length": emb.n_residues})
                    if kept is not None:
                        ds.attrs["kept"] = int(kept)
                    if self.fingerprint is not None:
                        ds.attrs["content"] = entry_content_key(emb.sequence, self.fingerprint, self.options)
                        ds.attrs["model_fingerprint"] = self.fingerprint
                        ds.attrs["options"] = self.options
                    if self.per_residue:
                        fh.create_dataset(f"per_residue/{key}", data=np.asarray(emb.per_residue, dtype=np.float32))
        self._existing.update(read_entries(part))
        self._buffer.clear()

    def close(self, order: Sequence[str] | None = None) -> int:
        """Flush, merge everything into ``path`` atomically, remove the parts; returns the entry count.

        ``order``: ids in the order the index should list them (e.g. the FASTA order); others follow.
        """
        self.flush()
        sources = self._sources()
        if not sources:
            return 0
        total = merge_embedding_files(self.path, sources, order=order, model=self.model, fingerprint=self.fingerprint)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._damaged.discard(self.path)
        self._existing = read_entries(self.path)
        return total

    def read_pooled(self, ids: Sequence[str], pooling: str) -> dict[str, np.ndarray]:
        """id -> pooled vector of the given entries, read from wherever each is stored."""
        return self._read(ids, POOLING_GROUPS[pooling])

    def read_per_residue(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """id -> per-residue array (L, d) (``(kept, d)`` for a cropped input) of the given entries."""
        return self._read(ids, "per_residue")

    def _read(self, ids: Sequence[str], group: str) -> dict[str, np.ndarray]:
        by_source: dict[Path, list[EmbeddingEntry]] = {}
        for seq_id in ids:
            entry = self.entry(seq_id)
            if entry is None:
                raise InputError(f"{self.path}: no embedding of {seq_id!r}")
            if group == "per_residue" and not entry.per_residue:
                raise InputError(f"{entry.source}: the entry of {seq_id!r} holds no per-residue embeddings")
            by_source.setdefault(entry.source, []).append(entry)
        out = {}
        for source, entries in by_source.items():
            with open_embedding_file(source) as fh:
                for entry in entries:
                    out[entry.id] = _dataset(fh, f"{group}/{entry.key}", source)[()]
        return out


def merge_embedding_files(
    target: str | os.PathLike[str],
    sources: Sequence[str | os.PathLike[str]],
    *,
    order: Sequence[str] | None,
    model: str,
    fingerprint: str | None = None,
    keep: set[tuple[Path, str]] | None = None,
) -> int:
    """Write the entries of ``sources`` (later sources win) into ``target`` atomically; returns the entry count.

    ``order``: ids in the order the index lists them; others follow. With ``fingerprint``, entries made by
    another model are left out; with ``keep``, only the (source, key) entries it names are taken. A source that
    cannot be read is an :class:`EmbeddingFileError` naming it.
    """
    sources = [Path(s) for s in sources]
    owner: dict[str, tuple[Path, str]] = {}  # key -> (file holding its newest version, id)
    for source in sources:  # later sources win (a recomputed entry replaces the older one)
        for key, entry in read_entries(source).items():
            if keep is not None and (source, key) not in keep:
                continue
            owner.pop(key, None)
            if fingerprint is None or entry.fingerprint == fingerprint:
                owner[key] = (source, entry.id)
    rank = {seq_id: i for i, seq_id in enumerate(order or ())}
    keys = sorted(owner, key=lambda k: rank.get(owner[k][1], len(rank)))  # stable: others keep their order
    from seqdance import __version__

    index: dict[str, list] = {"id": [], "key": [], "sequence": [], "length": []}
    dim = 0
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as dst:
            groups = {name: dst.create_group(name) for name in ("mean", "mean_all", "per_residue")}
            for source in dict.fromkeys(sources):
                with open_embedding_file(source) as src:
                    for key in (k for k in keys if owner[k][0] == source):
                        for name, group in groups.items():
                            if key in src.get(name, {}):
                                src.copy(_dataset(src, f"{name}/{key}", source), group, name=key)
                        dim = int(src[f"mean/{key}"].shape[0])
            for key in keys:
                attrs = groups["mean"][key].attrs
                index["id"].append(_text(attrs["id"]))
                index["key"].append(key)
                index["sequence"].append(_text(attrs["sequence"]))
                index["length"].append(int(attrs["length"]))
            group = dst.create_group("index")
            for name in ("id", "key", "sequence"):
                group.create_dataset(name, data=np.asarray(index[name], dtype=object), dtype=_STR)
            group.create_dataset("length", data=np.asarray(index["length"], dtype=np.int64))
            attrs = {"model": model, "embedding_dim": dim, "pooling": POOLING, "seqdance_version": __version__}
            if fingerprint is not None:
                attrs["model_fingerprint"] = fingerprint
            dst.attrs.update(attrs)
    return len(keys)


def read_embeddings(path: str | os.PathLike[str], *, per_residue: bool = False, pooling: str = "residues"
                    ) -> dict[str, np.ndarray]:
    """id -> pooled embedding (d,) (``pooling`` ``residues`` or ``all``), or per-residue embeddings (L, d) with
    ``per_residue=True``."""
    group = "per_residue" if per_residue else POOLING_GROUPS[pooling]
    with open_embedding_file(path) as fh:
        ids = [_text(s) for s in fh["index/id"][()]]
        keys = [_text(s) for s in fh["index/key"][()]]
        if group not in fh:
            raise InputError(f"{path} holds no {'per-residue' if per_residue else pooling} embeddings")
        return {i: _dataset(fh, f"{group}/{k}", path)[()] for i, k in zip(ids, keys) if k in fh[group]}
