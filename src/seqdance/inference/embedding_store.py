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
in ``OUT.h5`` or a part.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from seqdance.errors import InputError
from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import safe_stem
from seqdance.io_utils import atomic_path

POOLING = "mean over residues (special tokens and chain linkers excluded)"
_STR = h5py.string_dtype("utf-8")


def _entries(path: Path) -> dict[str, tuple[str, bool]]:
    """key -> (id, has per-residue embedding) of one embeddings or part file."""
    with h5py.File(path, "r") as fh:
        mean = fh.get("mean", {})
        per_residue = fh.get("per_residue", {})
        return {key: (str(mean[key].attrs["id"]), key in per_residue) for key in mean}


def _file_model(path: Path) -> str | None:
    with h5py.File(path, "r") as fh:
        model = fh.attrs.get("model")
        return None if model is None else str(model)


class EmbeddingWriter:
    """Collect embeddings and write them to ``path`` resumably (see the module docstring).

    ``model`` names the model that made the embeddings; mixing models in one file is refused unless
    ``overwrite`` (which starts the file afresh).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model: str,
        per_residue: bool = False,
        overwrite: bool = False,
        flush_every: int = 256,
    ) -> None:
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.model = str(model)
        self.per_residue = per_residue
        self.flush_every = max(1, flush_every)
        self._buffer: list[Prediction] = []
        if overwrite:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._existing: dict[str, tuple[str, bool]] = {}
        for source in self._sources():
            found = _file_model(source)
            if found is not None and found != self.model:
                raise InputError(
                    f"{source} holds embeddings from model {found!r}, not {self.model!r}; "
                    "write to another file or pass --overwrite"
                )
            self._existing.update(_entries(source))

    def _sources(self) -> list[Path]:
        parts = sorted(self.parts_dir.glob("part-*.h5")) if self.parts_dir.is_dir() else []
        return ([self.path] if self.path.exists() else []) + parts

    def is_done(self, seq_id: str) -> bool:
        """Whether ``seq_id`` already has the embeddings this writer was asked for."""
        entry = self._existing.get(safe_stem(seq_id))
        return entry is not None and entry[0] == seq_id and (entry[1] or not self.per_residue)

    def add(self, prediction: Prediction) -> None:
        if prediction.embedding is None:
            raise InputError(f"prediction {prediction.id!r} has no embedding (predict with embeddings=True)")
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
                    if self.per_residue:
                        fh.create_dataset(f"per_residue/{key}", data=emb)
                    self._existing[key] = (pred.id, self.per_residue)
        self._buffer.clear()

    def close(self, order: Sequence[str] | None = None) -> int:
        """Flush, merge everything into ``path`` atomically, remove the parts; returns the entry count.

        ``order``: ids in the order the index should list them (e.g. the FASTA order); others follow.
        """
        self.flush()
        sources = self._sources()
        if not sources:
            return 0
        owner: dict[str, tuple[Path, str]] = {}  # key -> (file holding its newest version, id)
        for source in sources:  # later sources win (a recomputed entry replaces the older one)
            for key, (seq_id, _) in _entries(source).items():
                owner.pop(key, None)
                owner[key] = (source, seq_id)
        rank = {seq_id: i for i, seq_id in enumerate(order or ())}
        keys = sorted(owner, key=lambda k: rank.get(owner[k][1], len(rank)))  # stable: others keep their order
        from seqdance import __version__

        index: dict[str, list] = {"id": [], "key": [], "sequence": [], "length": []}
        dim = 0
        with atomic_path(self.path) as tmp:
            with h5py.File(tmp, "w") as dst:
                mean_group = dst.create_group("mean")
                per_group = dst.create_group("per_residue")
                for source in sources:
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
                dst.attrs.update(
                    {"model": self.model, "embedding_dim": dim, "pooling": POOLING, "seqdance_version": __version__}
                )
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return len(keys)


def read_embeddings(path: str | os.PathLike[str], *, per_residue: bool = False) -> dict[str, np.ndarray]:
    """id -> mean embedding (d,), or per-residue embeddings (L, d) with ``per_residue=True``."""
    group = "per_residue" if per_residue else "mean"
    with h5py.File(path, "r") as fh:
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["index/id"][()]]
        keys = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["index/key"][()]]
        if per_residue and "per_residue" not in fh:
            raise InputError(f"{path} holds no per-residue embeddings")
        return {i: fh[f"{group}/{k}"][()] for i, k in zip(ids, keys) if k in fh[group]}
