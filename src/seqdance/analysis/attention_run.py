"""Run the attention metrics (:mod:`seqdance.analysis.attention`) of a model over the proteins of a store.

Any model with an ESM2 encoder works: a SeqDance/ESMDance :class:`~seqdance.model.DynamicsModel` (encoder
``esm2``), a plain ESM2 :class:`~seqdance.model.EsmMaskedLM` (encoder ``esm``) or a bare encoder. Each protein
runs alone (no padding) on its first 1,024 tokens; every layer's attention probabilities are scored as the
encoder produces them (its ``attention_hook``), so the layers × heads × T × T stack never exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from seqdance import tokenizer
from seqdance.analysis.attention import (
    MAX_TOKENS,
    AttentionMetricPlan,
    attention_targets,
    rows_for_protein,
)
from seqdance.analysis.models import encoder_of
from seqdance.errors import InputError
from seqdance.model.encoder import Esm2Encoder
from seqdance.store.hdf5 import DynamicsStore

PER_HEAD_COLUMNS: tuple[str, ...] = ("protein", "source", "group", "layer", "head")


def attention_encoder(model: torch.nn.Module, description: str = "model") -> Esm2Encoder:
    """The ESM2 encoder whose attention maps are analysed; a clear error for a model without one."""
    return encoder_of(model, description)


@torch.inference_mode()
def layer_metrics(
    encoder: Esm2Encoder, plan: AttentionMetricPlan, ids: np.ndarray, device: torch.device | str = "cpu"
) -> dict[int, dict[str, np.ndarray]]:
    """{layer: {metric: (heads,)}} for one protein's token ids (already truncated to the plan's tokens)."""
    out: dict[int, dict[str, np.ndarray]] = {}

    def score(layer: int, probs: torch.Tensor) -> None:
        out[layer] = plan.evaluate(probs[0])

    was_training = encoder.training
    encoder.eval()
    try:
        encoder(torch.as_tensor(ids, device=device)[None], None, attention_hook=score)
    finally:
        encoder.train(was_training)
    return out


def md_pair_names(store: DynamicsStore, split: str | None) -> list[str]:
    """Names of the store's proteins in ``split`` (None: all) that hold MD pair targets (co-movement, interactions)."""
    index = store.index
    chosen = index if split is None else index[index["label"] == split]
    return [str(n) for n, kind in zip(chosen["name"], chosen["kind"]) if kind == "md"]


def select_proteins(store: DynamicsStore, split: str | None, names: Sequence[str] | None = None) -> list[str]:
    """The proteins to analyse, with one clear error for each way the selection can be empty or wrong."""
    index = store.index
    if names:
        unknown = [n for n in names if n not in store]
        if unknown:
            raise InputError(f"{store.path}: unknown protein name(s) {', '.join(unknown[:5])}")
        kinds = dict(zip(index["name"], index["kind"]))
        not_md = [n for n in names if kinds[n] != "md"]
        if not_md:
            raise InputError(f"{store.path}: {', '.join(not_md[:5])} hold no MD pair targets (NMA entries have no "
                             "co-movement or interaction maps)")
        return list(names)
    if split is not None and not (index["label"] == split).any():
        labels = sorted(set(index["label"]))
        raise InputError(f"{store.path}: split {split!r} has no proteins (labels in the store: {', '.join(labels)}); "
                         "run 'seqdance dataset split' or pass --split all")
    chosen = md_pair_names(store, split)
    if not chosen:
        where = "" if split is None else f" in split {split!r}"
        raise InputError(
            f"{store.path}: no protein{where} has pair targets for attention analysis (co-movement and "
            f"interactions come from MD sources; this selection holds only NMA entries)"
        )
    return chosen


def analyze_attention(
    model: torch.nn.Module,
    store: DynamicsStore,
    *,
    split: str | None = "test",
    names: Sequence[str] | None = None,
    max_tokens: int = MAX_TOKENS,
    device: torch.device | str | None = None,
    progress: bool = False,
    description: str = "model",
) -> pd.DataFrame:
    """per_head table: one row per protein × layer × head (protein, source, group, layer, head, metrics...)."""
    encoder = attention_encoder(model, description)
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    chosen = select_proteins(store, split, names)
    rows: list[dict[str, object]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), desc="attention", unit="protein")
    try:
        for name in chosen:
            protein = store.read(name)
            targets = attention_targets(protein.pair, protein.sequence, max_tokens=max_tokens, name=name)
            plan = AttentionMetricPlan(targets)
            ids = tokenizer.encode(protein.sequence, name).ids[: targets.n_tokens]
            metrics = layer_metrics(encoder, plan, ids, dev)
            rows.extend(rows_for_protein(name, protein.source, protein.group, metrics))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows)
