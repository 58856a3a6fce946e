"""Model inputs of labelled rows: tokens, residue positions, and the frozen features the head method and
``--with-dynamics`` read, cached on disk by content.

The cache is the probe's embedding cache (:class:`seqdance.analysis.embeddings.EmbeddingCache`): one file per model
fingerprint and kind of feature, keyed by the SHA-256 of the sequence and the token limit, rewritten atomically.
Mean-pooled hidden states come from :func:`seqdance.analysis.embeddings.pooled_embeddings` itself (the same vectors
``seqdance probe`` caches); per-residue states and dynamics features are stored under the fingerprint with a
suffix naming the kind. A changed weight changes the fingerprint, so stale features are never reused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import NonFiniteError
from seqdance.tokenizer import encode, pad_batch

BATCH_TOKENS = 8192


@dataclass(frozen=True)
class TokenRow:
    ids: np.ndarray  # (T,) int64, cut to max_tokens
    residues: np.ndarray  # (L',) token position of each residue kept
    n_residues: int  # residues of the whole sequence (L ≥ L')


def tokenize(sequences: Sequence[str], names: Sequence[str], max_tokens: int) -> list[TokenRow]:
    rows = []
    for seq, name in zip(sequences, names):
        enc = encode(seq, name)
        keep = enc.residue_index[enc.residue_index < max_tokens]
        rows.append(TokenRow(enc.ids[:max_tokens], keep, enc.n_residues))
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


def _cache(cache_dir: str | os.PathLike[str] | None, fingerprint: str, kind: str):
    if cache_dir is None:
        return None
    from seqdance.analysis.embeddings import EmbeddingCache

    return EmbeddingCache(cache_dir, f"{fingerprint}.{kind}")


@torch.inference_mode()
def frozen_features(model: torch.nn.Module, sequences: Sequence[str], rows: Sequence[TokenRow], *, kind: str,
                    pooled: bool, max_tokens: int, cache_dir: str | os.PathLike[str] | None = None,
                    description: str = "model", progress: bool = False) -> list[np.ndarray]:
    """Per row: the model's last hidden state (``kind="hidden"``) or its dynamics features (``"dynamics"``),
    mean-pooled over residues ((d,) float32) or per residue ((L', d)); from the cache where it holds them."""
    from seqdance.analysis.embeddings import sequence_key
    from seqdance.finetuning.model import dynamics_features, encoder_of
    from seqdance.inference.fingerprint import module_fingerprint

    if kind == "hidden" and pooled:
        from seqdance.analysis.embeddings import pooled_embeddings

        names = [f"row {i + 1}" for i in range(len(sequences))]
        result = pooled_embeddings(model, list(sequences), pooling="residues", cache_dir=cache_dir, ids=names,
                                   max_tokens=max_tokens, progress=progress, description=description)
        return list(result.values)
    fingerprint = module_fingerprint(model)
    cache = _cache(cache_dir, fingerprint, f"finetune-{kind}-{'mean' if pooled else 'residues'}")
    keys = [sequence_key(s, max_tokens) for s in sequences]
    found = cache.get_many(list(dict.fromkeys(keys))) if cache is not None else {}
    results = {k: v["residues"] for k, v in found.items()}
    todo = sorted({k: i for i, k in reversed(list(enumerate(keys))) if k not in results}.values())
    device = model_device(model)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"finetune {kind} features", unit="sequence")
    try:
        with eval_mode(model):
            for batch in length_batches([len(rows[i].ids) for i in todo], BATCH_TOKENS):
                members = [todo[b] for b in batch]
                input_ids, attention_mask, residue_mask = collate([rows[i] for i in members], device)
                if kind == "hidden":
                    values = encoder_of(model)(input_ids, attention_mask)[0].float()
                else:
                    values = dynamics_features(model, input_ids, attention_mask, residue_mask)
                for b, i in enumerate(members):
                    per_residue = values[b, torch.from_numpy(rows[i].residues).to(device)].cpu().numpy()
                    array = per_residue.mean(0) if pooled else per_residue
                    array = np.asarray(array, dtype=np.float32)
                    if not np.isfinite(array).all():
                        raise NonFiniteError(f"{description}: non-finite {kind} features for row {i + 1}")
                    results[keys[i]] = array
                    if cache is not None:
                        cache.put(keys[i], {"residues": array})
                if bar is not None:
                    bar.update(len(members))
    finally:
        if bar is not None:
            bar.close()
        if cache is not None:
            cache.save()
    return [results[k] for k in keys]
