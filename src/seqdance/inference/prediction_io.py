"""Files for predictions: one ``.npz`` per sequence, a per-residue CSV table, embeddings in HDF5.

``<stem>.npz`` holds one array per predicted property (residue-aligned, as :class:`Prediction` gives them),
``embedding`` (L, d) and ``attention`` (L, L, layers*heads) when predicted, and the metadata ``id``,
``sequence``, ``chain_lengths`` and ``model`` (0-d string / int arrays, readable without pickle), plus
``model_fingerprint``, ``options`` and ``content_key`` when given (what a resumed run compares before reusing the
file). Every file is written atomically (:func:`seqdance.io_utils.atomic_path`).

Reading is defensive: :func:`inspect_prediction_file` reads a file's directory, array headers and metadata (not
its values) and names the file in one line (:class:`PredictionFileError`) when it is truncated, not an NPZ, holds
object arrays or lacks its metadata; :func:`load_prediction` does the same before it loads the values.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.inference.prediction import Prediction
from seqdance.io_utils import atomic_path
from seqdance.schema import PROPERTY_BY_NAME, RESIDUE_PROPERTIES, SS_CLASSES
from seqdance.tokenizer import ESM2_VOCAB, encode

METADATA_KEYS: tuple[str, ...] = ("id", "sequence", "chain_lengths", "model", "model_fingerprint", "options",
                                   "content_key")
#: Metadata stored as 0-d strings.
_TEXT_KEYS: tuple[str, ...] = ("id", "sequence", "model", "model_fingerprint", "options", "content_key")
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
            raise InputError(
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


class _Damaged(Exception):
    """A problem found while reading a prediction file (turned into a PredictionFileError naming it)."""


class PredictionFileError(InputError):
    """A prediction file that cannot be read: truncated, not an NPZ, object arrays, metadata missing."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: not a readable seqdance prediction file ({reason})")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class PredictionFileInfo:
    """What a prediction file holds, read without its values: array shapes and dtypes, and its metadata."""

    path: Path
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]]
    meta: dict[str, str]  # the 0-d string metadata it has (id, sequence, model, model_fingerprint, options, ...)
    chain_lengths: tuple[int, ...]

    @property
    def n_residues(self) -> int:
        return int(sum(self.chain_lengths))


#: The header numpy writes for an array (``np.lib.format``): parsed with a regular expression on the fast path;
#: any other header goes through numpy's own parser.
_NPY_HEADER = re.compile(r"\{'descr': '([^']+)', 'fortran_order': (?:True|False), 'shape': \(([0-9, ]*)\), \}\s*")
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # a zip local file header: signature ... name length, extra length


def _parse_header(raw: bytes) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, header bytes) of an ``.npy`` prefix written by numpy, or None to use numpy's parser."""
    if raw[:6] != b"\x93NUMPY" or raw[6:8] != b"\x01\x00":
        return None
    size = 10 + int.from_bytes(raw[8:10], "little")
    match = _NPY_HEADER.fullmatch(raw[10:size].decode("latin1"))
    if match is None or len(raw) < size:
        return None
    shape = tuple(int(n) for n in match.group(2).replace(" ", "").split(",") if n)
    return shape, np.dtype(match.group(1)), size


def _member_header(zf: zipfile.ZipFile, fh, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one ``.npy`` member, checking that its size fits them. Members stored uncompressed
    (``np.savez``) are read in place from ``fh``; others through :mod:`zipfile`."""
    parsed = None
    if info.compress_type == zipfile.ZIP_STORED:
        fh.seek(info.header_offset)
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise _Damaged(f"member {info.filename!r} has no local header")
        fh.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        parsed = _parse_header(fh.read(min(info.file_size, 4096)))
    if parsed is None:
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
            parsed = tuple(int(n) for n in shape), dtype, member.tell()
    shape, dtype, header = parsed
    if dtype.hasobject:
        raise _Damaged(f"array {info.filename!r} holds Python objects (refused: loading them could run code)")
    expected = header + math.prod(shape) * dtype.itemsize
    if info.file_size != expected:
        raise _Damaged(f"array {info.filename!r} holds {info.file_size} bytes, not the {expected} of its header")
    return shape, dtype


def inspect_prediction_file(path: str | os.PathLike[str]) -> PredictionFileInfo:
    """Array shapes, dtypes and metadata of a prediction file, read without loading its values.

    Anything wrong (missing, truncated, not an NPZ, object arrays, sizes that do not fit the headers, metadata
    missing or of the wrong kind) is a :class:`PredictionFileError` naming the file in one line.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            arrays = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise _Damaged(f"member {info.filename!r} is not a .npy array")
                arrays[info.filename[:-4]] = _member_header(zf, fh, info)
            missing = [k for k in ("id", "sequence", "chain_lengths") if k not in arrays]
            if missing:
                raise _Damaged(f"missing {', '.join(missing)}")
            for key in (k for k in _TEXT_KEYS if k in arrays):
                if arrays[key][0] != () or arrays[key][1].kind != "U":
                    raise _Damaged(f"{key!r} is not a text value")
            if len(arrays["chain_lengths"][0]) != 1 or arrays["chain_lengths"][1].kind not in "iu":
                raise _Damaged("'chain_lengths' is not a list of integers")

            def value(key: str) -> np.ndarray:  # a small member, read whole (its CRC checked)
                return np.lib.format.read_array(io.BytesIO(zf.read(f"{key}.npy")), allow_pickle=False)

            meta = {k: str(value(k)) for k in _TEXT_KEYS if k in arrays}
            chain_lengths = tuple(int(n) for n in value("chain_lengths"))
    except FileNotFoundError:
        raise PredictionFileError(path, "no such file") from None
    except (_Damaged, OSError, ValueError, EOFError, KeyError, struct.error, zipfile.BadZipFile,
            zipfile.LargeZipFile) as exc:
        raise PredictionFileError(path, " ".join(str(exc).split()) or type(exc).__name__) from exc
    return PredictionFileInfo(path, arrays, meta, chain_lengths)


def load_prediction(path: str | os.PathLike[str]) -> Prediction:
    """Read a file written by :func:`save_prediction` back into a :class:`Prediction`; a damaged file is a
    :class:`PredictionFileError` naming it."""
    info = inspect_prediction_file(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            attention = data["attention"] if "attention" in info.arrays else None
            return Prediction(
                id=info.meta["id"],
                sequence=info.meta["sequence"],
                chain_lengths=info.chain_lengths,
                values={k: data[k] for k in info.arrays if k in PROPERTY_BY_NAME},
                embedding=data["embedding"] if "embedding" in info.arrays else None,
                attention_maps=None if attention is None else np.moveaxis(attention, -1, 0),
            )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # e.g. a damaged value (CRC)
        raise PredictionFileError(path, " ".join(str(exc).split())) from exc


#: One residue token of a recorded sequence: a letter, or a special token such as ``<mask>`` (chains split on ':').
_RESIDUE_TOKEN = re.compile(r"<[^>]*>|[^:]")


def residue_table(seq_id: str, sequence: str, values: dict[str, np.ndarray],
                  chain_lengths: Iterable[int] | None = None) -> pd.DataFrame:
    """Per-residue table of one prediction: chain (1-based), position in chain (1-based), residue letter,
    the scalar residue properties and the argmax secondary-structure class (schema ``SS_CLASSES``).

    ``chain_lengths``: as the prediction records them (then the sequence is not tokenised again)."""
    if chain_lengths is None:
        encoded = encode(sequence, seq_id)
        lengths = list(encoded.chain_lengths)
        residues = [ESM2_VOCAB[t] for t in encoded.ids[encoded.residue_index]]
    else:
        lengths = [int(n) for n in chain_lengths]
        residues = _RESIDUE_TOKEN.findall(sequence)
        if len(residues) != sum(lengths):
            raise InputError(f"sequence {seq_id!r}: {len(residues)} residues recorded for chains of {lengths}")
    chain = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    position = np.concatenate([np.arange(1, n + 1) for n in lengths])
    table = {"id": seq_id, "chain": chain, "position": position, "residue": residues}
    table.update({name: values[name] for name in RESIDUE_SCALARS})
    table["ss"] = np.asarray(SS_CLASSES)[np.argmax(values["ss"], axis=1)]
    return pd.DataFrame(table, columns=list(RESIDUE_TABLE_COLUMNS))


def write_residue_csv(path: str | os.PathLike[str], npz_paths: Iterable[str | os.PathLike[str]]) -> int:
    """Rebuild the residue table from prediction files (read one at a time); returns the row count."""
    rows = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(RESIDUE_TABLE_COLUMNS) + "\n")
        for npz in npz_paths:
            try:
                with np.load(npz, allow_pickle=False) as data:
                    values = {name: data[name] for name in (*RESIDUE_SCALARS, "ss")}
                    frame = residue_table(str(data["id"]), str(data["sequence"]), values,
                                          data["chain_lengths"].tolist())
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
                raise PredictionFileError(npz, " ".join(str(exc).split())) from exc
            frame.to_csv(fh, header=False, index=False, float_format="%.6g")
            rows += len(frame)
    return rows
