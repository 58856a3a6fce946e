"""Embeddings of sequences: the one path of ``seqdance embed``, ``seqdance probe`` and anything later.

The embedding of a sequence is the last hidden state of the model's ESM2 encoder (after its final LayerNorm), for
any model that has one: a SeqDance/ESMDance :class:`~seqdance.model.DynamicsModel`, a plain ESM2
:class:`~seqdance.model.EsmMaskedLM` or a bare encoder. Tokenising, windows, batching and merging are those of
predictions (:func:`seqdance.inference.predict.iter_outputs`): a sequence longer than the window (1,022 residues
by default) is embedded in overlapping windows merged token by token by the most-central-window rule
(:mod:`seqdance.inference.windows`). So ``embed`` and ``probe`` give identical vectors for a sequence of any
length when they use the same pooling.

Poolings (:data:`POOLINGS`; both come from every pass, summed in float64, kept as float32):

* ``residues``: the mean over residue tokens (``<cls>``, ``<eos>`` and chain linkers left out); ``embed``'s
  ``/mean``;
* ``all``: the mean over every token of the input, ``<cls>``, chain linkers and ``<eos>`` included: the reference
  notebook's ``res_emb.mean(dim=1)`` (docs/design.md#embedding-probes), defined there for one input of at most
  1,024 tokens (1,022 residues of one chain). Beyond that seqdance averages the whole token sequence as if it
  were one input, each token's vector taken from the window where it is most central and ``<cls>`` / ``<eos>``
  from the first / last window: an extension of the notebook's definition, not the notebook's (which never
  embeds longer inputs).

:func:`cached_embeddings` keeps pooled vectors in an embedding file per model (the layout of
:mod:`seqdance.inference.embedding_store`, the one embedding cache), keyed by content: sequence, model
fingerprint and window settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqdance.devices import eval_mode
from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.predict import (
    DEFAULT_MAX_TOKENS_PER_BATCH,
    DEFAULT_WINDOW,
    TOKENS,
    PreparedSequence,
    SequenceInput,
    check_model_device,
    iter_outputs,
    plan_prediction_batches,
    prepare_sequences,
)
from seqdance.inference.sharding import text_digest
from seqdance.model.encoder import Esm2Encoder

POOLINGS: tuple[str, ...] = ("residues", "all")
#: What ``probe`` pools by default: the reference notebook's mean over all tokens.
NOTEBOOK_POOLING = "all"
_HIDDEN = "hidden"


def encoder_of(model: torch.nn.Module, description: str = "model") -> Esm2Encoder:
    """The ESM2 encoder of a model (``esm2`` of a DynamicsModel, ``esm`` of an EsmMaskedLM, or the model itself)."""
    if isinstance(model, Esm2Encoder):
        return model
    for attr in ("esm2", "esm"):
        encoder = getattr(model, attr, None)
        if isinstance(encoder, Esm2Encoder):
            return encoder
    raise InputError(
        f"{description} has no attention maps or embeddings to analyse: it is not an ESM2-type model "
        f"({type(model).__name__} holds no ESM2 encoder)"
    )


@dataclass(frozen=True, eq=False)
class Embedding:
    """The embeddings of one sequence: per residue (L, d) and pooled (d,) by each of :data:`POOLINGS`."""

    id: str
    sequence: str  # one-letter residues, chains joined by ":"
    chain_lengths: tuple[int, ...]
    per_residue: np.ndarray = field(repr=False)  # (L, d) float32
    pooled: dict[str, np.ndarray] = field(repr=False)  # pooling -> (d,) float32
    n_windows: int = 1

    @property
    def n_residues(self) -> int:
        return int(sum(self.chain_lengths))


def pool_tokens(tokens: np.ndarray, residue_index: np.ndarray) -> dict[str, np.ndarray]:
    """Both poolings of one sequence's token-level vectors (T, d): float64 means, returned as float32."""
    wide = tokens.astype(np.float64)
    return {"residues": wide[residue_index].mean(axis=0).astype(np.float32),
            "all": wide.mean(axis=0).astype(np.float32)}


def iter_embeddings(
    model: torch.nn.Module,
    sequences: SequenceInput | Sequence[SequenceInput] | None = None,
    *,
    ids: Sequence[str] | None = None,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    window: int | None = DEFAULT_WINDOW,
    window_overlap: int | None = None,
    device: str | torch.device | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    prepared: Sequence[PreparedSequence] | None = None,
    progress: bool | str = False,
    description: str = "model",
) -> Iterator[tuple[int, Embedding]]:
    """Yield ``(input index, Embedding)`` as soon as each is complete; arguments as
    :func:`seqdance.inference.predict.iter_predictions` (``batches`` from
    :func:`seqdance.inference.predict.plan_prediction_batches` with ``pairs=False``)."""
    encoder = encoder_of(model, description)
    jobs = prepared if prepared is not None else prepare_sequences(sequences, ids=ids, window=window,
                                                                   window_overlap=window_overlap)
    if batches is None:
        plan = plan_prediction_batches(prepared=jobs, pairs=False, max_tokens_per_batch=max_tokens_per_batch)
        batches = [list(unit.members) for unit in plan]
    dev = check_model_device(encoder, device)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
        hidden, _ = encoder(input_ids.to(dev), attention_mask.to(dev))
        return {_HIDDEN: (hidden, TOKENS)}

    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else "embed"
    bar = tqdm(total=sum(len(b) for b in batches), unit="sequence", desc=label, disable=not progress,
               dynamic_ncols=True)
    try:
        with eval_mode(encoder), torch.inference_mode():
            for job, arrays in iter_outputs(forward, jobs, batches, max_tokens_per_batch=max_tokens_per_batch,
                                            quadratic=False, bar=bar):
                tokens = arrays[_HIDDEN]
                residues = job.encoded.residue_index
                yield job.index, Embedding(job.id, job.sequence, job.encoded.chain_lengths,
                                           np.ascontiguousarray(tokens[residues]), pool_tokens(tokens, residues),
                                           len(job.windows))
    finally:
        bar.close()


def embed_sequences(model: torch.nn.Module, sequences: SequenceInput | Sequence[SequenceInput], **kwargs
                    ) -> list[Embedding]:
    """One :class:`Embedding` per input, in input order (keyword arguments as :func:`iter_embeddings`)."""
    results: dict[int, Embedding] = dict(iter_embeddings(model, sequences, **kwargs))
    return [results[i] for i in range(len(results))]


def window_options(window: int | None = DEFAULT_WINDOW, window_overlap: int | None = None) -> str:
    """The options that change an embedding's values, as recorded in embedding files."""
    import json

    overlap = None if window is None else (window // 2 if window_overlap is None else window_overlap)
    return json.dumps({"window": window, "window_overlap": overlap}, sort_keys=True)


@dataclass
class PooledEmbeddings:
    """(n, d) pooled embeddings in input order, and how they were obtained."""

    values: np.ndarray
    pooling: str
    fingerprint: str
    n_computed: int
    n_cached: int
    n_windowed: int  # sequences longer than one window (embedded in windows)


def cached_embeddings(
    model: torch.nn.Module,
    sequences: Sequence[str],
    *,
    pooling: str = NOTEBOOK_POOLING,
    cache_dir: str | os.PathLike[str] | None = None,
    fingerprint: str | None = None,
    ids: Sequence[str] | None = None,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    progress: bool = False,
    description: str = "model",
) -> PooledEmbeddings:
    """Pooled embeddings (n, d) of ``sequences`` in input order, through :func:`iter_embeddings`.

    With ``cache_dir``, vectors are kept in ``cache_dir/<model fingerprint>.h5`` (an embedding file of
    :mod:`seqdance.inference.embedding_store`, entries named by the sequence's digest), so another label file,
    split or pooling with the same model and sequences costs no forward pass, and a changed model (any weight)
    never reuses stale vectors. ``ids`` name the sequences in errors (default: their 1-based row).
    """
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    encoder_of(model, description)
    names = list(ids) if ids is not None else [f"row {i + 1}" for i in range(len(sequences))]
    prepared = prepare_sequences(sequences, ids=names)  # every bad sequence is named before any work
    fp = fingerprint or module_fingerprint(model)
    options = window_options()
    keys = [text_digest(job.sequence) for job in prepared]
    writer = None
    if cache_dir is not None:
        from seqdance.inference.embedding_store import EmbeddingWriter

        writer = EmbeddingWriter(Path(cache_dir) / f"{fp}.h5", model=fp, fingerprint=fp, options=options,
                                 damaged="recompute")
    first = {}
    for k, key in enumerate(keys):
        first.setdefault(key, k)
    todo = [k for key, k in first.items() if writer is None or not writer.is_done(key, prepared[k].sequence)]
    vectors: dict[str, np.ndarray] = {}
    try:
        if todo:
            subset = [prepared[k] for k in todo]
            renumbered = [PreparedSequence(n, job.id, job.encoded, job.windows) for n, job in enumerate(subset)]
            for n, emb in iter_embeddings(model, prepared=renumbered, max_tokens_per_batch=max_tokens_per_batch,
                                          progress="embeddings" if progress else False, description=description):
                key = keys[todo[n]]
                vectors[key] = emb.pooled[pooling]
                if writer is not None:
                    writer.add(emb, key=key)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        vectors.update(writer.read_pooled([k for k in first if k not in vectors], pooling))
    values = np.stack([vectors[key] for key in keys]) if keys else np.zeros((0, 0), np.float32)
    return PooledEmbeddings(values, pooling, fp, len(todo), len(sequences) - len(todo),
                            sum(len(job.windows) > 1 for job in prepared))
