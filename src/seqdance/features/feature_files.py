"""Feature files: the ``.npz`` outputs of ``features md`` / ``features nma``, written, read back, tabulated and
fingerprinted. The one module that knows their layout.

A feature file records a **fingerprint**: what its values depend on — the record of every input file
(:meth:`seqdance.features.inputs.spec.InputSpec.record`: SHA-256, and the part of a file a selector picks, such as
``file.h5#320/0``) and the options that change values (:meth:`seqdance.features.options.MdOptions.fingerprint`,
:meth:`~seqdance.features.options.NmaOptions.fingerprint`: a Python user makes the same fingerprint as the
command line). A re-run skips an output whose recorded fingerprint equals the one it would write
(:func:`is_up_to_date`), so a moved or renamed input is still recognised while an edited one, or other options,
means recomputation. The dataset builder reads feature files as inputs and keeps their fingerprint as provenance.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.errors import InputError
from seqdance.features.conformation import ARRAY_PREFIX as CONFORMATION_PREFIX
from seqdance.features.inputs.spec import InputSpecLike, as_specs
from seqdance.features.inputs.structures import SkippedResidue
from seqdance.features.options import MdOptions, feature_fingerprint
from seqdance.features.results import NmaFeatures
from seqdance.io_utils import atomic_path
from seqdance.schema import PROPERTY_BY_NAME, SS_CLASSES, FeatureKind, properties_of_kind

__all__ = [
    "FINGERPRINT_KEY", "MdFileResult", "compute_md_file", "feature_fingerprint", "feature_kind", "fingerprint_array",
    "is_complete_nma_file",
    "is_up_to_date", "load_feature_file", "load_nma_features", "recorded_fingerprint", "residue_table",
    "save_md_features", "save_nma_features", "write_residue_csv",
]

#: Key of the fingerprint (a JSON string) in a feature file.
FINGERPRINT_KEY = "fingerprint"
#: Keys that tell the two families apart (every file of the family holds them).
_KIND_MARKERS: dict[str, tuple[str, ...]] = {
    "md": (*(p.raw_key for p in properties_of_kind("md")), "n_frames", "frequency"),
    "nma": tuple(p.raw_key for p in properties_of_kind("nma")),
}
_STRING_KEYS = ("sequence", "frequency", "zero_modes", "disconnected")
_INT_KEYS = ("n_frames", "n_pieces", "gnm_zero_modes", "anm_zero_modes")
#: NMA property keys, and the per-structure metadata stored beside them.
_NMA_PROPERTY_KEYS: tuple[str, ...] = tuple(p.raw_key for p in properties_of_kind("nma"))
NMA_METADATA_KEYS: tuple[str, ...] = tuple(k for k in NmaFeatures.__annotations__ if k not in _NMA_PROPERTY_KEYS)
_NMA_STRING_KEYS = ("sequence", "zero_modes", "disconnected")
_NMA_INT_KEYS = ("n_pieces", "gnm_zero_modes", "anm_zero_modes")
_SKIPPED_DTYPE = np.dtype([("chain", "U8"), ("resseq", "i4"), ("icode", "U1"), ("resname", "U8"), ("reason", "U64")])


def _content(fingerprint: Mapping[str, Any]) -> tuple:
    """The parts of a fingerprint that determine the values (file names left out)."""
    inputs = tuple((i.get("role"), i.get("selector", ""), i.get("sha256")) for i in fingerprint.get("inputs", []))
    options = json.dumps(fingerprint.get("options", {}), sort_keys=True)
    return fingerprint.get("kind"), inputs, options


def recorded_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint a feature file records (None when it has none or cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if FINGERPRINT_KEY not in data.files:
                return None
            return json.loads(str(data[FINGERPRINT_KEY]))
    except (OSError, ValueError, KeyError):
        return None


def is_up_to_date(path: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> bool:
    """Whether ``path`` is a complete feature file made from the same input contents with the same options.

    The one skip rule of ``features md`` and ``features nma``: files are written atomically, so a readable file
    with a matching fingerprint is complete; a file without a fingerprint (older seqdance) is recomputed.
    """
    if not Path(path).is_file():
        return False
    recorded = recorded_fingerprint(path)
    return recorded is not None and _content(recorded) == _content(fingerprint)


def fingerprint_array(fingerprint: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The entry a feature file stores for ``fingerprint`` (nothing for None)."""
    return {} if fingerprint is None else {FINGERPRINT_KEY: np.asarray(json.dumps(fingerprint, sort_keys=True))}


def save_md_features(
    path: str | os.PathLike[str],
    features: Mapping[str, Any],
    *,
    fingerprint: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`~seqdance.features.extract_md` output (plus ``extra`` arrays) to a compressed ``.npz``
    atomically; strings and counts as 0-d arrays, so reading needs no pickle."""
    arrays = {key: np.asarray(value) for key, value in features.items()}
    if "missing_properties" in features:  # names, also when there are none (np.asarray(()) would be float)
        arrays["missing_properties"] = np.asarray(features["missing_properties"], dtype=str)
    arrays.update({key: np.asarray(value) for key, value in (extra or {}).items()})
    arrays.update(fingerprint_array(fingerprint))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return Path(path)


def save_nma_features(
    path: str | os.PathLike[str],
    features: Mapping[str, Any],
    *,
    dtype: np.dtype | type | None = None,
    compress: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
) -> Path:
    """Write :func:`~seqdance.features.extract_nma` output to an ``.npz`` file atomically (no pickles; strings as
    0-d arrays), with the ``fingerprint`` of its inputs and options when given. ``dtype``: of the property arrays
    (default: as given)."""
    arrays: dict[str, np.ndarray] = {}
    for key in _NMA_PROPERTY_KEYS:
        arrays[key] = np.asarray(features[key], dtype=dtype)
    for key in _NMA_STRING_KEYS:
        arrays[key] = np.array(str(features[key]))
    for key in _NMA_INT_KEYS:
        arrays[key] = np.array(int(features[key]))
    for key in ("residue_ids", "chain_lengths", "gnm_range_sizes", "anm_range_sizes"):
        arrays[key] = np.asarray(features[key])
    for key in features:
        if key.startswith(CONFORMATION_PREFIX):
            arrays[key] = np.asarray(features[key])
    skipped = features.get("skipped_residues", [])
    arrays["skipped_residues"] = np.array(
        [(s.chain, s.resseq, s.icode, s.resname, s.reason) for s in skipped], dtype=_SKIPPED_DTYPE)
    arrays.update(fingerprint_array(fingerprint))
    writer = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer(handle, **arrays)
    return Path(path)


def load_nma_features(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`save_nma_features` back into the :func:`~seqdance.features.extract_nma`
    dictionary."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _NMA_PROPERTY_KEYS + NMA_METADATA_KEYS if k not in data.files]
        if missing:
            raise InputError(f"{path}: not a seqdance NMA feature file (missing {missing})")
        features: dict[str, Any] = {key: data[key] for key in data.files}
    for key in _NMA_STRING_KEYS:
        features[key] = str(features[key])
    for key in _NMA_INT_KEYS:
        features[key] = int(features[key])
    features["skipped_residues"] = [
        SkippedResidue(str(r["chain"]), int(r["resseq"]), str(r["icode"]), str(r["resname"]), str(r["reason"]))
        for r in features["skipped_residues"]
    ]
    return features


def is_complete_nma_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an intact NMA feature file with every key (every member's CRC checked, so a truncated
    or damaged file is not complete). Whether it is up to date is :func:`is_up_to_date`."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
            return set(_NMA_PROPERTY_KEYS + NMA_METADATA_KEYS) <= names and archive.testzip() is None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return False


def feature_kind(keys: Sequence[str]) -> FeatureKind | None:
    """``md`` or ``nma`` for a feature file's keys (None when they are neither)."""
    present = set(keys)
    for kind, markers in _KIND_MARKERS.items():
        if set(markers) <= present:
            return kind  # type: ignore[return-value]
    return None


def load_feature_file(path: str | os.PathLike[str]) -> tuple[FeatureKind, dict[str, Any], dict[str, Any] | None]:
    """(kind, feature dict as the extractor returned it, fingerprint or None) of a ``features md``/``nma`` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable feature file ({exc})") from exc
    kind = feature_kind(list(arrays))
    if kind is None:
        raise InputError(
            f"{path}: not a seqdance feature file (written by 'seqdance features md' or 'features nma'; "
            f"keys found: {', '.join(sorted(arrays)[:12])})"
        )
    fingerprint = arrays.pop(FINGERPRINT_KEY, None)
    features: dict[str, Any] = dict(arrays)
    for key in _STRING_KEYS:
        if key in features:
            features[key] = str(features[key])
    for key in _INT_KEYS:
        if key in features:
            features[key] = int(features[key])
    return kind, features, (json.loads(str(fingerprint)) if fingerprint is not None else None)


# --- per-residue tables ---------------------------------------------------------------------------------


def residue_table(features: Mapping[str, Any]):
    """Per-residue table of a feature dict (MD or NMA): chain, residue number, insertion code, residue name,
    then every scalar residue property; MD adds the RMSF normalised as stored (``rmsf_nor``), the fraction of
    each DSSP class (``ss_<class>``) and the most frequent class (``ss``)."""
    import pandas as pd

    kind = feature_kind(list(features))
    if kind is None:
        raise InputError("not a feature dict of extract_md or extract_nma")
    ids = np.asarray(features["residue_ids"])
    number_field = "resSeq" if "resSeq" in (ids.dtype.names or ()) else "resseq"
    sequence = str(features["sequence"]).replace(":", "")
    table: dict[str, Any] = {
        "chain": ids["chain"].astype(str),
        "residue_number": ids[number_field].astype(np.int64),
        "insertion_code": ids["icode"].astype(str),
    }
    if "residue_names" in features:
        table["residue_name"] = np.asarray(features["residue_names"]).astype(str)
    table["residue"] = list(sequence) if len(sequence) == len(ids) else [""] * len(ids)
    for prop in properties_of_kind(kind, "residue"):
        if prop.width != 1:
            continue
        values = np.asarray(features[prop.raw_key], dtype=np.float64)
        table[prop.raw_key] = values
        if prop.transform == "max_normalise" and values.size and np.nanmax(values) > 0:
            table[prop.name] = values / np.nanmax(values)
    if kind == "md":
        ss = np.asarray(features[PROPERTY_BY_NAME["ss"].raw_key], dtype=np.float64)
        for k, label in enumerate(SS_CLASSES):
            table[f"ss_{label}"] = ss[:, k]
        table["ss"] = np.asarray(SS_CLASSES)[np.argmax(ss, axis=1)]
    return pd.DataFrame(table)


def write_residue_csv(path: str | os.PathLike[str], features: Mapping[str, Any]) -> Path:
    """:func:`residue_table` of ``features`` as a CSV file, written atomically."""
    with atomic_path(path) as tmp:
        residue_table(features).to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


# --- one MD feature file, computed unless up to date ---------------------------------------------------------


@dataclass(frozen=True)
class MdFileResult:
    """What :func:`compute_md_file` did: ``features`` is None when the file was up to date (nothing computed)."""

    output: Path
    features: Mapping[str, Any] | None
    table: Path | None  # the per-residue CSV, when asked for
    seconds: float


def compute_md_file(output: str | os.PathLike[str], topology: InputSpecLike,
                    trajectories: InputSpecLike | Sequence[InputSpecLike] | None = None,
                    options: MdOptions | None = None, *, csv: bool = False, overwrite: bool = False,
                    progress: bool = False) -> MdFileResult:
    """MD features of one system into ``output`` (``.npz``, atomically) with its fingerprint, unless the file is
    already up to date (same input contents and options; ``overwrite`` recomputes). ``csv``: also the per-residue
    table ``output.csv`` (a stale one is removed otherwise). What ``seqdance features md`` runs."""
    import time

    from seqdance.features.md.extract import extract_md

    options = options or MdOptions()
    output = Path(output)
    if output.suffix != ".npz":
        raise InputError(f"output must be an .npz file, got {output}")
    table = output.with_suffix(".csv")
    specs = as_specs(trajectories)
    fingerprint = options.fingerprint(topology, specs)
    if not overwrite and is_up_to_date(output, fingerprint):
        if csv and not table.exists():
            write_residue_csv(table, load_feature_file(output)[1])
        return MdFileResult(output, None, table if csv else None, 0.0)
    began = time.perf_counter()
    features = extract_md(topology, specs or None, options, progress=progress)
    extra = {
        "source_topology": str(topology),
        "source_trajectories": [str(t) for t in specs],
        "frames": [options.start, -1 if options.stop is None else options.stop, options.stride],
    }
    save_md_features(output, features, fingerprint=fingerprint, extra=extra)
    if csv:
        write_residue_csv(table, features)
    else:
        table.unlink(missing_ok=True)  # a table of the previous values would now disagree with the .npz
    return MdFileResult(output, features, table if csv else None, time.perf_counter() - began)
