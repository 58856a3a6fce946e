"""Compact JSON forms of arrays for the page: rounded numbers, and pair maps as 8-bit codes.

A page carries many numbers; these keep it small without hiding anything silently: residue values keep six
significant digits (as ``residues.csv``), pair maps keep 255 levels over their colour range (the page says so),
and maps longer than the display limit are averaged over square blocks (the page says that too).
"""

from __future__ import annotations

import base64
import gzip
import math

import numpy as np

#: The 8-bit code of a NaN cell (a pair of a long sequence that shared no prediction window).
NAN_CODE = 255
#: Codes 0..LEVELS-1 span a map's colour range.
LEVELS = 255


def rounded(values: np.ndarray, digits: int = 6) -> list:
    """``values`` as nested lists of floats with ``digits`` significant digits; NaN and infinities become None."""
    array = np.asarray(values, dtype=np.float64)
    text = np.char.mod(f"%.{digits}g", array)
    out = text.astype(np.float64)
    as_list = out.tolist()
    if np.isfinite(out).all():
        return as_list
    return _none_for_nonfinite(as_list)


def _none_for_nonfinite(value):
    if isinstance(value, list):
        return [_none_for_nonfinite(v) for v in value]
    return value if math.isfinite(value) else None


def block_mean(matrix: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """``matrix`` averaged over square blocks of ``factor`` × ``factor`` cells so that no side exceeds ``limit``
    (NaN cells are left out of a block's mean); returns the map and the factor (1: unchanged)."""
    n = matrix.shape[0]
    factor = max(1, math.ceil(n / limit))
    if factor == 1:
        return matrix.astype(np.float64), 1
    size = math.ceil(n / factor) * factor
    padded = np.full((size, size), np.nan)
    padded[:n, :n] = matrix
    blocks = padded.reshape(size // factor, factor, size // factor, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), factor


def quantised_map(matrix: np.ndarray, lo: float, hi: float) -> dict:
    """An (n, n) map as base64 8-bit codes over ``[lo, hi]`` (``NAN_CODE`` for NaN), row-major."""
    data = np.asarray(matrix, dtype=np.float64)
    span = hi - lo if hi > lo else 1.0
    codes = np.clip(np.rint((data - lo) / span * (LEVELS - 1)), 0, LEVELS - 1)
    codes = np.where(np.isfinite(data), codes, NAN_CODE).astype(np.uint8)
    return {"n": int(data.shape[0]), "lo": float(lo), "hi": float(hi), "levels": LEVELS, "nan_code": NAN_CODE,
            "codes": base64.b64encode(codes.tobytes()).decode("ascii")}


def gzip_base64(text: str) -> str:
    """gzip + base64 of UTF-8 text (the page inflates it with the browser's DecompressionStream)."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
