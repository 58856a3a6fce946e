"""Files for predictions: one ``.npz`` per sequence, a per-residue CSV table, embeddings in HDF5.

``<stem>.npz`` holds one array per predicted property (residue-aligned, as :class:`Prediction` gives them),
``embedding`` (L, d) and ``attention`` (L, L, layers*heads) when predicted, and the metadata ``id``,
``sequence``, ``chain_lengths`` and ``model`` (0-d string / int arrays, readable without pickle), plus
``model_fingerprint`` and ``options`` when given (what a resumed run compares before reusing the file).
Every file is written atomically (:func:`seqdance.io_utils.atomic_path`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.inference.prediction import Prediction
from seqdance.io_utils import atomic_path
from seqdance.schema import PROPERTY_BY_NAME, RESIDUE_PROPERTIES, SS_CLASSES
from seqdance.tokenizer import ESM2_VOCAB, encode

METADATA_KEYS: tuple[str, ...] = ("id", "sequence", "chain_lengths", "model", "model_fingerprint", "options")
#: Per-residue scalar properties written to the residue table (every residue property of width 1).
RESIDUE_SCALARS: tuple[str, ...] = tuple(p.name for p in RESIDUE_PROPERTIES if p.width == 1)
#: Residue table columns: where the residue is, the scalars, and the most frequent secondary structure.
RESIDUE_TABLE_COLUMNS: tuple[str, ...] = ("id", "chain", "position", "residue", *RESIDUE_SCALARS, "ss")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


def safe_stem(seq_id: str) -> str:
    """A file-name-safe stem for a sequence id (runs of other characters become ``_``).

    Ids that had to be shortened get a hash suffix so that distinct ids stay distinct.
    """
    stem = _UNSAFE.sub("_", seq_id).strip("._") or "_"
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha1(seq_id.encode("utf-8")).hexdigest()[:10]
        stem = f"{stem[:_MAX_STEM]}_{digest}"
    return stem


def unique_stems(seq_ids: Iterable[str]) -> dict[str, str]:
    """Map each id to its :func:`safe_stem`; raise if two ids would share a file name."""
    stems: dict[str, str] = {}
    owner: dict[str, str] = {}
    for seq_id in seq_ids:
        stem = safe_stem(seq_id)
        if stem.lower() in owner and owner[stem.lower()] != seq_id:
            raise ValueError(
                f"sequence ids {owner[stem.lower()]!r} and {seq_id!r} map to the same file name {stem!r}; "
                "rename one of them"
            )
        owner[stem.lower()] = seq_id
        stems[seq_id] = stem
    return stems


def prediction_arrays(
    prediction: Prediction, *, model: str | None = None, metadata: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """The arrays an ``.npz`` file of one prediction holds (``metadata``: extra 0-d strings, e.g. the model
    fingerprint)."""
    arrays: dict[str, np.ndarray] = {name: np.ascontiguousarray(v) for name, v in prediction.items()}
    if prediction.embedding is not None:
        arrays["embedding"] = prediction.embedding
    if prediction.attention is not None:
        arrays["attention"] = np.ascontiguousarray(prediction.attention)
    arrays["id"] = np.asarray(prediction.id)
    arrays["sequence"] = np.asarray(prediction.sequence)
    arrays["chain_lengths"] = np.asarray(prediction.chain_lengths, dtype=np.int64)
    if model is not None:
        arrays["model"] = np.asarray(str(model))
    for key, value in (metadata or {}).items():
        arrays[key] = np.asarray(str(value))
    return arrays


def save_prediction(
    path: str | os.PathLike[str],
    prediction: Prediction,
    *,
    model: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write one prediction to ``path`` (``.npz``, uncompressed) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **prediction_arrays(prediction, model=model, metadata=metadata))
    return Path(path)


def load_prediction(path: str | os.PathLike[str]) -> Prediction:
    """Read a file written by :func:`save_prediction` back into a :class:`Prediction`."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("id", "sequence", "chain_lengths") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: not a seqdance prediction file (missing {', '.join(missing)})")
        attention = data["attention"] if "attention" in data.files else None
        return Prediction(
            id=str(data["id"]),
            sequence=str(data["sequence"]),
            chain_lengths=tuple(int(n) for n in data["chain_lengths"]),
            values={k: data[k] for k in data.files if k in PROPERTY_BY_NAME},
            embedding=data["embedding"] if "embedding" in data.files else None,
            attention_maps=None if attention is None else np.moveaxis(attention, -1, 0),
        )


def residue_table(seq_id: str, sequence: str, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-residue table of one prediction: chain (1-based), position in chain (1-based), residue letter,
    the scalar residue properties and the argmax secondary-structure class (schema ``SS_CLASSES``)."""
    encoded = encode(sequence, seq_id)
    chain = np.repeat(np.arange(1, len(encoded.chain_lengths) + 1), encoded.chain_lengths)
    position = np.concatenate([np.arange(1, n + 1) for n in encoded.chain_lengths])
    table = {
        "id": seq_id,
        "chain": chain,
        "position": position,
        "residue": [ESM2_VOCAB[t] for t in encoded.ids[encoded.residue_index]],
    }
    table.update({name: values[name] for name in RESIDUE_SCALARS})
    table["ss"] = np.asarray(SS_CLASSES)[np.argmax(values["ss"], axis=1)]
    return pd.DataFrame(table, columns=list(RESIDUE_TABLE_COLUMNS))


def write_residue_csv(path: str | os.PathLike[str], npz_paths: Iterable[str | os.PathLike[str]]) -> int:
    """Rebuild the residue table from prediction files (read one at a time); returns the row count."""
    rows = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(RESIDUE_TABLE_COLUMNS) + "\n")
        for npz in npz_paths:
            with np.load(npz, allow_pickle=False) as data:
                values = {name: data[name] for name in (*RESIDUE_SCALARS, "ss")}
                frame = residue_table(str(data["id"]), str(data["sequence"]), values)
            frame.to_csv(fh, header=False, index=False, float_format="%.6g")
            rows += len(frame)
    return rows
