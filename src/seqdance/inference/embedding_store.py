"""Sequence embeddings in one HDF5 file, written resumably.

Layout of ``OUT.h5``::

    /mean/<key>          (d,)   float32  mean of the last hidden state over residues (no special tokens,
                                          no chain linkers); attrs ``id``, ``sequence``, ``length``
    /per_residue/<key>   (L, d) float32  per-residue embeddings (only with ``per_residue=True``)
    /index/id, /index/key, /index/sequence (UTF-8 strings), /index/length (int64): one row per entry
    attrs: model, embedding_dim, pooling, seqdance_version

``key`` is the file-name-safe form of the id (:func:`seqdance.inference.prediction_io.safe_stem`).

Why parts: an HDF5 file being written when a process is killed can be left unreadable. New entries therefore
go to small part files in ``OUT.h5.parts/`` (each written atomically), and :meth:`EmbeddingWriter.close`
merges the finished file and the parts into a new ``OUT.h5`` that replaces the old one atomically. A run
that is interrupted loses at most the entries not yet in a part; the next run skips everything already
in ``OUT.h5`` or a part whose content matches.

Content: with a model fingerprint, each entry records it (attr ``model_fingerprint``) and a ``content`` key
(a hash of its sequence, the fingerprint and the options that change values); an entry is reused only when
that key matches, and a merge keeps only entries of the current fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import safe_stem
from seqdance.io_utils import atomic_path

POOLING = "mean over residues (special tokens and chain linkers excluded)"
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class _Entry:
    id: str
    per_residue: bool
    content: str | None
    fingerprint: str | None


def _entries(path: Path) -> dict[str, _Entry]:
    """key -> entry description of one embeddings or part file."""
    with h5py.File(path, "r") as fh:
        mean = fh.get("mean", {})
        per_residue = fh.get("per_residue", {})
        out = {}
        for key in mean:
            attrs = mean[key].attrs
            content, fingerprint = attrs.get("content"), attrs.get("model_fingerprint")
            out[key] = _Entry(
                str(attrs["id"]),
                key in per_residue,
                None if content is None else str(content),
                None if fingerprint is None else str(fingerprint),
            )
        return out


def entry_content_key(sequence: str, fingerprint: str, options: str = "") -> str:
    """What an embedding depends on: the sequence, the model fingerprint and the value-changing options."""
    return hashlib.sha256(f"{sequence}\0{fingerprint}\0{options}".encode()).hexdigest()


def _file_model(path: Path) -> str | None:
    with h5py.File(path, "r") as fh:
        model = fh.attrs.get("model")
        return None if model is None else str(model)


class EmbeddingWriter:
    """Collect embeddings and write them to ``path`` resumably (see the module docstring).

    ``model`` names the model that made the embeddings; mixing models in one file is refused unless
    ``overwrite`` (which starts the file afresh). ``fingerprint`` (:func:`seqdance.inference.fingerprint.
    module_fingerprint`) and ``options`` make reuse depend on content (see the module docstring). ``also_done``:
    other embedding files whose matching entries count as done (a sharded run's merged file).
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
    ) -> None:
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.model = str(model)
        self.per_residue = per_residue
        self.flush_every = max(1, flush_every)
        self.fingerprint = fingerprint
        self.options = options
        self._buffer: list[Prediction] = []
        if overwrite:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._existing: dict[str, _Entry] = {}
        extra = [Path(p) for p in also_done if Path(p).is_file()]
        for source in extra + self._sources():
            found = _file_model(source)
            if found is not None and found != self.model:
                raise ValueError(
                    f"{source} holds embeddings from model {found!r}, not {self.model!r}; "
                    "write to another file or pass --overwrite"
                )
            self._existing.update(_entries(source))

    def _sources(self) -> list[Path]:
        parts = sorted(self.parts_dir.glob("part-*.h5")) if self.parts_dir.is_dir() else []
        return ([self.path] if self.path.exists() else []) + parts

    def is_done(self, seq_id: str, sequence: str | None = None) -> bool:
        """Whether ``seq_id`` already has the embeddings this writer was asked for (and, with a fingerprint,
        for this ``sequence``, model and options)."""
        entry = self._existing.get(safe_stem(seq_id))
        if entry is None or entry.id != seq_id or not (entry.per_residue or not self.per_residue):
            return False
        if self.fingerprint is None:
            return True
        if sequence is None:
            raise ValueError("is_done needs the sequence when the writer has a model fingerprint")
        return entry.content == entry_content_key(sequence, self.fingerprint, self.options)

    def add(self, prediction: Prediction) -> None:
        if prediction.embedding is None:
            raise ValueError(f"prediction {prediction.id!r} has no embedding (predict with embeddings=True)")
        self._buffer.append(prediction)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered entries to a new part file."""
        if not self._buffer:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        number = len(list(self.parts_dir.glob("part-*.h5")))
        part = self.parts_dir / f"part-{number:06d}.h5"
        with atomic_path(part) as tmp:
            with h5py.File(tmp, "w") as fh:
                fh.attrs["model"] = self.model
                for pred in self._buffer:
                    key = safe_stem(pred.id)
                    emb = np.asarray(pred.embedding, dtype=np.float32)
                    ds = fh.create_dataset(f"mean/{key}", data=emb.mean(axis=0))
                    ds.attrs["id"] = pred.id
                    ds.attrs["sequence"] = pred.sequence
                    ds.attrs["length"] = pred.n_residues
                    content = None
                    if self.fingerprint is not None:
                        content = entry_content_key(pred.sequence, self.fingerprint, self.options)
                        ds.attrs["content"] = content
                        ds.attrs["model_fingerprint"] = self.fingerprint
                    if self.per_residue:
                        fh.create_dataset(f"per_residue/{key}", data=emb)
                    self._existing[key] = _Entry(pred.id, self.per_residue, content, self.fingerprint)
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
        return total


def merge_embedding_files(
    target: str | os.PathLike[str],
    sources: Sequence[str | os.PathLike[str]],
    *,
    order: Sequence[str] | None,
    model: str,
    fingerprint: str | None = None,
) -> int:
    """Write the entries of ``sources`` (later sources win) into ``target`` atomically; returns the entry count.

    ``order``: ids in the order the index lists them; others follow. With ``fingerprint``, entries made by
    another model are left out.
    """
    sources = [Path(s) for s in sources]
    owner: dict[str, tuple[Path, str]] = {}  # key -> (file holding its newest version, id)
    for source in sources:  # later sources win (a recomputed entry replaces the older one)
        for key, entry in _entries(source).items():
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
            mean_group = dst.create_group("mean")
            per_group = dst.create_group("per_residue")
            for source in dict.fromkeys(sources):
                with h5py.File(source, "r") as src:
                    for key in (k for k in keys if owner[k][0] == source):
                        src.copy(src[f"mean/{key}"], mean_group, name=key)
                        if key in src.get("per_residue", {}):
                            src.copy(src[f"per_residue/{key}"], per_group, name=key)
                        dim = int(src[f"mean/{key}"].shape[0])
            for key in keys:
                attrs = mean_group[key].attrs
                index["id"].append(str(attrs["id"]))
                index["key"].append(key)
                index["sequence"].append(str(attrs["sequence"]))
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


def read_embeddings(path: str | os.PathLike[str], *, per_residue: bool = False) -> dict[str, np.ndarray]:
    """id -> mean embedding (d,), or per-residue embeddings (L, d) with ``per_residue=True``."""
    group = "per_residue" if per_residue else "mean"
    with h5py.File(path, "r") as fh:
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["index/id"][()]]
        keys = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["index/key"][()]]
        if per_residue and "per_residue" not in fh:
            raise ValueError(f"{path} holds no per-residue embeddings")
        return {i: fh[f"{group}/{k}"][()] for i, k in zip(ids, keys) if k in fh[group]}


def read_embedding_index(path: str | os.PathLike[str]) -> dict[str, bool]:
    """id -> whether it has a per-residue embedding, for every entry of an embeddings file."""
    return {entry.id: entry.per_residue for entry in _entries(Path(path)).values()}
