"""Mean-pooled last-layer embeddings for probes (DESIGN §10.2), cached by content.

Pooling (both are computed in every forward, so switching costs nothing):

* ``all`` (default, the notebook's ``res_emb.mean(dim=1)``): mean of the last hidden state (after the final
  LayerNorm) over every token, ``<cls>`` and ``<eos>`` (and chain linkers) included;
* ``residues``: mean over residue tokens only.

Sequences longer than 1,024 tokens are truncated to their first 1,024 (as the attention analysis; ESM2 was
trained on at most 1,024), and the caller is told how many were.

**Cache.** ``CACHE_DIR/<model fingerprint>.h5`` (:func:`seqdance.inference.fingerprint.module_fingerprint`) holds one entry per sequence, keyed by the SHA-256 of the
token limit and the sequence, so probing another label, another split or another label file with the same
model and sequences costs no forward pass, and a changed model (any weight) never reuses stale vectors. The
file is rewritten whole and atomically (every ``save_every`` new entries and at the end), so a killed run
loses at most the unsaved entries and never leaves a damaged cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from seqdance import tokenizer
from seqdance.analysis.models import encoder_of
from seqdance.devices import eval_mode
from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.io_utils import atomic_path
from seqdance.schema import ESM2_MAX_TOKENS

POOLINGS: tuple[str, ...] = ("all", "residues")
DEFAULT_POOLING = "all"
MAX_TOKENS = ESM2_MAX_TOKENS
DEFAULT_BATCH_TOKENS = 8192


def sequence_key(sequence: str, max_tokens: int = MAX_TOKENS) -> str:
    """Content key of one sequence's embedding (sequence text and token limit)."""
    return hashlib.sha256(f"{int(max_tokens)}\n{sequence.upper()}".encode()).hexdigest()


class EmbeddingCache:
    """Pooled embeddings of one model, keyed by :func:`sequence_key`, in ``directory/<fingerprint>.h5``.

    Entries already on disk are read only when asked for (:meth:`get_many`), so a large cache costs no memory;
    new entries are held until :meth:`save` rewrites the file (old entries copied as they are) and renames it
    into place. Two processes saving one cache at once lose nothing but each other's newest entries.
    """

    def __init__(self, directory: str | os.PathLike[str], fingerprint: str, *, save_every: int = 1000) -> None:
        self.path = Path(directory) / f"{fingerprint}.h5"
        self.fingerprint = fingerprint
        self.save_every = max(1, int(save_every))
        self._new: dict[str, dict[str, np.ndarray]] = {}
        self._stored: set[str] = set()
        if self.path.is_file():
            with h5py.File(self.path, "r") as fh:
                stored = fh.attrs.get("fingerprint")
                if stored is not None and str(stored) != fingerprint:
                    raise InputError(f"{self.path} holds embeddings of another model ({stored}); remove it")
                self._stored = set(fh.keys())

    def __contains__(self, key: str) -> bool:
        return key in self._new or key in self._stored

    def __len__(self) -> int:
        return len(self._stored | self._new.keys())

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """key -> {pooling: vector} for the given keys that the cache holds (one file open for all)."""
        out = {k: self._new[k] for k in keys if k in self._new}
        on_disk = [k for k in keys if k not in out and k in self._stored]
        if on_disk:
            with h5py.File(self.path, "r") as fh:
                for key in on_disk:
                    out[key] = {p: fh[key][p][()] for p in POOLINGS if p in fh[key]}
        return out

    def put(self, key: str, pooled: dict[str, np.ndarray]) -> None:
        self._new[key] = {p: np.asarray(v, dtype=np.float32) for p, v in pooled.items()}
        if len(self._new) >= self.save_every:
            self.save()

    def save(self) -> None:
        """Rewrite the cache file atomically with the new entries (no-op when nothing is new)."""
        if not self._new:
            return
        with atomic_path(self.path) as tmp, h5py.File(tmp, "w") as fh:
            fh.attrs["fingerprint"] = self.fingerprint
            if self._stored:
                with h5py.File(self.path, "r") as old:
                    for key in self._stored - self._new.keys():
                        old.copy(old[key], fh, name=key)
            for key, pooled in self._new.items():
                group = fh.create_group(key)
                for pooling, vector in pooled.items():
                    group.create_dataset(pooling, data=vector)
        self._stored |= self._new.keys()
        self._new = {}


@dataclass
class PooledEmbeddings:
    """(n, d) pooled embeddings in input order, and how they were obtained."""

    values: np.ndarray
    pooling: str
    fingerprint: str
    n_computed: int
    n_cached: int
    n_truncated: int


def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, T, d) over positions where ``mask`` (B, T) is true, in float64."""
    weights = mask.to(torch.float64)
    return (hidden.to(torch.float64) * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)


def _batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that each batch pads to at most ``batch_tokens`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.inference_mode()
def pooled_embeddings(
    model: torch.nn.Module,
    sequences: Sequence[str],
    *,
    pooling: str = DEFAULT_POOLING,
    cache_dir: str | os.PathLike[str] | None = None,
    fingerprint: str | None = None,
    ids: Sequence[str] | None = None,
    max_tokens: int = MAX_TOKENS,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: bool = False,
    description: str = "model",
) -> PooledEmbeddings:
    """Pooled last-layer embeddings (n, d) of ``sequences`` (chains joined by ':'); see the module docstring.

    ``ids`` name the sequences in errors (default: their 1-based row). ``fingerprint`` saves hashing the model
    again when the caller already has it.
    """
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    encoder = encoder_of(model, description)
    device = next(encoder.parameters()).device
    names = list(ids) if ids is not None else [f"row {i + 1}" for i in range(len(sequences))]
    encoded = [tokenizer.encode(seq, name) for seq, name in zip(sequences, names)]  # errors before any work
    fp = fingerprint or module_fingerprint(model)
    cache = EmbeddingCache(cache_dir, fp) if cache_dir is not None else None
    keys = [sequence_key(s, max_tokens) for s in sequences]
    todo = sorted({k: i for i, k in reversed(list(enumerate(keys)))  # first occurrence of each new sequence
                   if cache is None or k not in cache}.values())
    results: dict[str, dict[str, np.ndarray]] = {}
    lengths = [min(len(encoded[i].ids), max_tokens) for i in todo]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="embeddings", unit="seq")
    try:
        for batch in _batches(lengths, batch_tokens):
            rows = [todo[b] for b in batch]
            width = max(lengths[b] for b in batch)
            input_ids = torch.full((len(rows), width), tokenizer.PAD_ID, dtype=torch.long)
            token_mask = torch.zeros((len(rows), width), dtype=torch.bool)
            residue_mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for r, i in enumerate(rows):
                tokens = encoded[i].ids[:max_tokens]
                input_ids[r, : len(tokens)] = torch.from_numpy(tokens)
                token_mask[r, : len(tokens)] = True
                positions = encoded[i].residue_index
                residue_mask[r, torch.from_numpy(positions[positions < max_tokens])] = True
            with eval_mode(encoder):
                hidden, _ = encoder(input_ids.to(device), token_mask.to(device=device, dtype=torch.long))
            pooled_all = _pool(hidden, token_mask.to(device)).cpu().numpy().astype(np.float32)
            pooled_res = _pool(hidden, residue_mask.to(device)).cpu().numpy().astype(np.float32)
            for r, i in enumerate(rows):
                if not (np.isfinite(pooled_all[r]).all() and np.isfinite(pooled_res[r]).all()):
                    raise InputError(f"{description}: non-finite embedding for sequence {names[i]}")
                entry = {"all": pooled_all[r], "residues": pooled_res[r]}
                results[keys[i]] = entry
                if cache is not None:
                    cache.put(keys[i], entry)
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
        if cache is not None:
            cache.save()
    if cache is not None:
        results.update(cache.get_many([k for k in dict.fromkeys(keys) if k not in results]))
    vectors = [results[key][pooling] for key in keys]
    n_truncated = sum(len(e.ids) > max_tokens for e in encoded)
    return PooledEmbeddings(np.stack(vectors) if vectors else np.zeros((0, 0), np.float32), pooling, fp,
                            len(todo), len(sequences) - len(todo), n_truncated)
