"""Feature files: the ``.npz`` outputs of ``features md`` / ``features nma``, read back, tabulated, fingerprinted.

A feature file records a **fingerprint**: what its values depend on — the SHA-256 of every input file (and the
part of a file a selector picks, such as ``file.h5#320/0``) and the options that change values. A re-run skips
an output whose recorded fingerprint equals the one it would write (:func:`is_up_to_date`), so a moved or
renamed input is still recognised while an edited one, or other options, means recomputation. The dataset
builder reads feature files as inputs and keeps their fingerprint as provenance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path, sha256_file
from seqdance.schema import PROPERTY_BY_NAME, SS_CLASSES, FeatureKind, properties_of_kind

#: Key of the fingerprint (a JSON string) in a feature file.
FINGERPRINT_KEY = "fingerprint"
#: Keys that tell the two families apart (every file of the family holds them).
_KIND_MARKERS: dict[str, tuple[str, ...]] = {
    "md": (*(p.raw_key for p in properties_of_kind("md")), "n_frames", "frequency"),
    "nma": tuple(p.raw_key for p in properties_of_kind("nma")),
}
_STRING_KEYS = ("sequence", "frequency", "zero_modes", "disconnected")
_INT_KEYS = ("n_frames", "n_pieces", "gnm_zero_modes", "anm_zero_modes")


def _split_selector(spec: str) -> tuple[str, str]:
    """``file.h5#320/0`` -> (``file.h5``, ``320/0``); ``#`` in an existing file's name is part of the name."""
    if "#" in spec and not os.path.exists(spec):
        base, _, selector = spec.rpartition("#")
        return base, selector
    return spec, ""


def input_record(role: str, spec: str | os.PathLike[str]) -> dict[str, Any]:
    """What the fingerprint holds about one input: role, path as given, selector, SHA-256 and size."""
    text = os.fspath(spec)
    path, selector = _split_selector(text)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{role} file not found: {path}")
    return {"role": role, "path": text, "selector": selector, "sha256": sha256_file(path),
            "bytes": os.path.getsize(path)}


def feature_fingerprint(
    kind: FeatureKind, inputs: Sequence[tuple[str, str | os.PathLike[str]]], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The fingerprint of a feature file made from ``inputs`` ((role, path) pairs) with ``options``."""
    return {
        "kind": kind,
        "inputs": [input_record(role, path) for role, path in inputs],
        "options": {key: options[key] for key in sorted(options)},
    }


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
