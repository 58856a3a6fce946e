"""Model inputs of labelled rows: tokens, residue positions, and the frozen features the head method and
``--with-dynamics`` read, cached on disk by content in the one embedding store.

Fine-tuning reads a sequence's first ``max_tokens`` tokens (the model input the task head trains on and predicts
from); frozen features are those of that input, kept under ``cache_dir`` in the layout of
:mod:`seqdance.inference.embedding_store`:

* mean-pooled last hidden states of a row whose whole sequence is its model input (it fits ``max_tokens`` and one
  model window) come from :func:`seqdance.inference.embeddings.cached_embeddings` (``residues`` pooling) itself:
  the same vectors, in the same file ``<model fingerprint>.h5``, as ``seqdance probe`` caches;
* everything else (per-residue hidden states, the hidden states of a cut sequence, the dynamics features of
  :func:`seqdance.finetuning.model.dynamics_features`, pooled or per residue) goes to
  ``<model fingerprint>.finetune-<kind>.h5`` through :class:`~seqdance.inference.embedding_store.EmbeddingWriter`,
  one entry per content key: the sequence, the model fingerprint and :func:`feature_options` (the feature kind and
  the token limit). The entry of a cut sequence records how many residues its input kept; its means are over
  that input (``mean_all`` over every token of it).

Features cached once serve every epoch, fold and later run; a changed weight changes the fingerprint, so stale
features are never reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError, NonFiniteError
from seqdance.tokenizer import decode, encode, pad_batch

BATCH_TOKENS = 8192
#: Kinds of frozen features: the encoder's last hidden state, or the base model's predicted dynamics.
FEATURE_KINDS: tuple[str, ...] = ("hidden", "dynamics")


@dataclass(frozen=True)
class TokenRow:
    """The model input of one labelled row: its sequence's first ``max_tokens`` tokens."""

    ids: np.ndarray  # (T,) int64, cut to max_tokens
    residues: np.ndarray  # (L',) token position of each residue kept
    n_residues: int  # residues of the whole sequence (L ≥ L')
    sequence: str  # the whole sequence as the tokenizer reads it (upper case, chains joined by ":")
    chain_lengths: tuple[int, ...]
    n_tokens: int  # tokens of the whole sequence (≥ T)

    @property
    def cut(self) -> bool:
        """Whether the input lost tokens of the sequence (residues, or only its final ``<eos>``)."""
        return len(self.ids) < self.n_tokens


def tokenize(sequences: Sequence[str], names: Sequence[str], max_tokens: int) -> list[TokenRow]:
    rows = []
    for seq, name in zip(sequences, names):
        enc = encode(seq, name)
        keep = enc.residue_index[enc.residue_index < max_tokens]
        rows.append(TokenRow(enc.ids[:max_tokens], keep, enc.n_residues, decode(enc.ids), enc.chain_lengths,
                             len(enc.ids)))
    return rows


def collate(rows: Sequence[TokenRow], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, residue_mask) of a batch, padded to its longest row."""
    input_ids, attention_mask = pad_batch([r.ids for r in rows])
    residue_mask = torch.zeros(input_ids.shape, dtype=torch.bool)
    for b, r in enumerate(rows):
        residue_mask[b, torch.from_numpy(r.residues)] = True
    return input_ids.to(device), attention_mask.to(device), residue_mask.to(device)


def length_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices, longest first, grouped so that each padded batch holds at most ``budget`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and lengths[out[-1][0]] * (len(out[-1]) + 1) <= budget:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def feature_options(kind: str, max_tokens: int) -> str:
    """The options an entry of frozen features depends on besides its sequence and model (its content key)."""
    return json.dumps({"feature": f"finetune-{kind}", "input": "first max_tokens tokens", "max_tokens": max_tokens},
                      sort_keys=True)


def feature_file(cache_dir: str | os.PathLike[str], fingerprint: str, kind: str) -> Path:
    """The embedding file that holds a model's frozen features of one kind (except whole-sequence pooled hidden
    states, which live in :func:`~seqdance.inference.embeddings.cached_embeddings`' ``<fingerprint>.h5``)."""
    return Path(cache_dir) / f"{fingerprint}.finetune-{kind}.h5"


def _whole(row: TokenRow) -> bool:
    """Whether the row's model input is its whole sequence in one model window (as the embedding path reads it)."""
    from seqdance.inference.predict import DEFAULT_WINDOW

    return not row.cut and row.n_tokens - 2 <= DEFAULT_WINDOW


@torch.inference_mode()
def frozen_features(model: torch.nn.Module, sequences: Sequence[str], rows: Sequence[TokenRow], *, kind: str,
                    pooled: bool, max_tokens: int, cache_dir: str | os.PathLike[str] | None = None,
                    description: str = "model", progress: bool = False) -> list[np.ndarray]:
    """Per row: the model's last hidden state (``kind="hidden"``) or its dynamics features (``"dynamics"``) over
    the row's model input, mean-pooled over residues ((d,) float32) or per residue ((L', d)); from the cache
    where it holds them (see the module docstring)."""
    if kind not in FEATURE_KINDS:
        raise InputError(f"kind of frozen features must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    from seqdance.inference.fingerprint import module_fingerprint

    fingerprint = module_fingerprint(model) if cache_dir is not None else None
    results: list[np.ndarray | None] = [None] * len(rows)
    rest = list(range(len(rows)))
    if kind == "hidden" and pooled:
        from seqdance.inference.embeddings import cached_embeddings

        whole = [i for i in rest if _whole(rows[i])]
        if whole:
            found = cached_embeddings(model, [sequences[i] for i in whole], pooling="residues", cache_dir=cache_dir,
                                      fingerprint=fingerprint, ids=[f"row {i + 1}" for i in whole],
                                      progress=progress, description=description)
            for i, vector in zip(whole, found.values):
                results[i] = vector
        rest = [i for i in rest if results[i] is None]
    if rest:
        stored = _stored_features(model, [rows[i] for i in rest], [i + 1 for i in rest], kind=kind, pooled=pooled,
                                  max_tokens=max_tokens, cache_dir=cache_dir, fingerprint=fingerprint,
                                  description=description, progress=progress)
        for i, array in zip(rest, stored):
            results[i] = array
    for i, array in enumerate(results):
        if not np.isfinite(array).all():
            raise NonFiniteError(f"{description}: non-finite {kind} features for row {i + 1}")
    return results  # type: ignore[return-value]


def _stored_features(model: torch.nn.Module, rows: Sequence[TokenRow], numbers: Sequence[int], *, kind: str,
                     pooled: bool, max_tokens: int, cache_dir: str | os.PathLike[str] | None, fingerprint: str | None,
                     description: str, progress: bool) -> list[np.ndarray]:
    """Frozen features of ``rows`` (1-based row ``numbers`` for errors) through the embedding store: each
    distinct content computed once, entries reused when their content key matches."""
    from seqdance.inference.embedding_store import EmbeddingWriter, entry_content_key

    options = feature_options(kind, max_tokens)
    writer = None
    if cache_dir is not None and fingerprint is not None:
        keys = [entry_content_key(r.sequence, fingerprint, options) for r in rows]
        writer = EmbeddingWriter(feature_file(cache_dir, fingerprint, kind), model=fingerprint, per_residue=not pooled,
                                 fingerprint=fingerprint, options=options, damaged="recompute")
    else:
        keys = [r.sequence for r in rows]
    first: dict[str, int] = {}
    for n, key in enumerate(keys):
        first.setdefault(key, n)
    todo = [n for key, n in first.items() if writer is None or not writer.is_done(key, rows[n].sequence)]
    values: dict[str, np.ndarray] = {}
    try:
        for n, emb in _compute(model, [rows[n] for n in todo], kind=kind, progress=progress):
            row, number = rows[todo[n]], numbers[todo[n]]
            if not (np.isfinite(emb.per_residue).all() and np.isfinite(emb.pooled["all"]).all()):
                raise NonFiniteError(f"{description}: non-finite {kind} features for row {number}")
            values[keys[todo[n]]] = emb.pooled["residues"] if pooled else emb.per_residue
            if writer is not None:
                writer.add(emb, key=keys[todo[n]], kept=len(row.residues) if row.cut else None)
    finally:
        if writer is not None and todo:
            writer.close()
    missing = [key for key in first if key not in values]
    if writer is not None and missing:
        values.update(writer.read_pooled(missing, "residues") if pooled else writer.read_per_residue(missing))
    return [values[key] for key in keys]


def _compute(model: torch.nn.Module, rows: Sequence[TokenRow], *, kind: str, progress: bool
             ) -> Iterator[tuple[int, object]]:
    """Yield ``(index into rows, Embedding)``: the features of each row's model input, per residue kept and
    pooled (``residues``: mean over those residues; ``all``: mean over every token of the input)."""
    from seqdance.finetuning.model import dynamics_features
    from seqdance.inference.embeddings import Embedding, encoder_of, pool_tokens

    if not rows:
        return
    device = model_device(model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc=f"finetune {kind} features", unit="sequence")
    try:
        with eval_mode(model), torch.inference_mode():
            for batch in length_batches([len(r.ids) for r in rows], BATCH_TOKENS):
                input_ids, attention_mask, residue_mask = collate([rows[n] for n in batch], device)
                if kind == "hidden":
                    values = encoder_of(model)(input_ids, attention_mask)[0].float()
                else:
                    values = dynamics_features(model, input_ids, attention_mask, residue_mask)
                values = values.cpu().numpy()
                for b, n in enumerate(batch):
                    row = rows[n]
                    tokens = values[b, : len(row.ids)]
                    yield n, Embedding(row.sequence, row.sequence, row.chain_lengths,
                                       np.ascontiguousarray(tokens[row.residues], dtype=np.float32),
                                       pool_tokens(tokens, row.residues))
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
