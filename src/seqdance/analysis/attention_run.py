"""Run the attention metrics (:mod:`seqdance.analysis.attention`) of a model over the proteins of a store.

Any model with an ESM2 encoder works: a SeqDance/ESMDance :class:`~seqdance.model.DynamicsModel` (encoder
``esm2``), a plain ESM2 :class:`~seqdance.model.EsmMaskedLM` (encoder ``esm``) or a bare encoder. Each protein
runs alone (no padding) on its first 1,024 tokens; every layer's attention probabilities are scored as the
encoder produces them (its ``attention_hook``), so the layers × heads × T × T stack never exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqdance import tokenizer
from seqdance.analysis.attention import (
    MAX_TOKENS,
    METRIC_NAMES,
    AttentionMetricPlan,
    attention_targets,
    rows_for_protein,
)
from seqdance.analysis.models import encoder_of
from seqdance.devices import eval_mode
from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.io_utils import atomic_path
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

    with eval_mode(encoder):
        encoder(torch.as_tensor(ids, device=device)[None], None, attention_hook=score)
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


def _protein_rows(
    encoder: Esm2Encoder, store: DynamicsStore, name: str, max_tokens: int, device: torch.device
) -> list[dict[str, object]]:
    protein = store.read(name)
    targets = attention_targets(protein.pair, protein.sequence, max_tokens=max_tokens, name=name)
    plan = AttentionMetricPlan(targets)
    ids = tokenizer.encode(protein.sequence, name).ids[: targets.n_tokens]
    return rows_for_protein(name, protein.source, protein.group, layer_metrics(encoder, plan, ids, device))


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
    resume_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """per_head table: one row per protein × layer × head (protein, source, group, layer, head, metrics...).

    ``resume_dir``: append each finished protein's rows to ``resume_dir/per_head.partial.csv`` (with the run's
    model fingerprint, store content and options in ``attention_run.json``), and skip proteins already there
    when the same run is started again. A different model, store or option is refused rather than mixed in.
    """
    encoder = attention_encoder(model, description)
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    chosen = select_proteins(store, split, names)
    rows_per_protein = encoder.config.num_layers * encoder.config.num_heads
    done: dict[str, list[dict[str, object]]] = {}
    partial = None
    if resume_dir is not None:
        partial = Path(resume_dir) / PARTIAL_NAME
        state = {"model": module_fingerprint(model), "store": store_fingerprint(store, chosen), "split": split,
                 "proteins": chosen, "max_tokens": int(max_tokens)}
        done = _resume(Path(resume_dir), state, rows_per_protein)
    todo = [n for n in chosen if n not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), initial=len(chosen) - len(todo), desc="attention", unit="protein")
    try:
        for name in todo:
            rows = _protein_rows(encoder, store, name, max_tokens, dev)
            done[name] = rows
            if partial is not None:
                _append_rows(partial, rows)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame([row for name in chosen for row in done[name]])


PARTIAL_NAME = "per_head.partial.csv"
STATE_NAME = "attention_run.json"
FINAL_NAME = "per_head.csv"


def store_fingerprint(store: DynamicsStore, names: Sequence[str]) -> str:
    """SHA-256 of the index rows (name, sequence, source, label, provenance with input checksums) of ``names``."""
    digest = hashlib.sha256()
    for name in names:
        row = store.row(name)
        digest.update(json.dumps([str(row.get(k, "")) for k in ("name", "modify_seq", "source", "label",
                                                                 "provenance")]).encode())
    return digest.hexdigest()


def _resume(directory: Path, state: dict[str, object], rows_per_protein: int) -> dict[str, list[dict[str, object]]]:
    """Rows of proteins finished by an earlier run with the same state (complete proteins only)."""
    state_path = directory / STATE_NAME
    sources = [p for p in (directory / FINAL_NAME, directory / PARTIAL_NAME) if p.is_file()]
    if state_path.is_file() and sources:
        previous = json.loads(state_path.read_text())
        if previous != state:
            differs = sorted(k for k in state if previous.get(k) != state[k])
            raise InputError(
                f"{directory} holds an attention analysis of another run ({', '.join(differs)} differ); "
                "use another output folder or --overwrite"
            )
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(state_path) as tmp:
        tmp.write_text(json.dumps(state, indent=1))
    done: dict[str, list[dict[str, object]]] = {}
    for source in sources:
        try:
            frame = pd.read_csv(source, keep_default_na=True)
        except pd.errors.EmptyDataError:
            continue
        if "protein" not in frame.columns:
            continue
        frame["protein"] = frame["protein"].astype(str)
        for name, part in frame.groupby("protein", sort=False):
            if len(part) == rows_per_protein and part[list(METRIC_NAMES)].shape[1] == len(METRIC_NAMES):
                done[str(name)] = part.to_dict("records")
    return done


def _append_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Append one protein's rows to the partial CSV and flush them to disk (a torn last protein is re-run)."""
    frame = pd.DataFrame(rows)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, header=new, index=False, float_format="%.17g")
        fh.flush()
        os.fsync(fh.fileno())


def finish_resumable(directory: str | os.PathLike[str]) -> None:
    """Remove the partial rows once ``per_head.csv`` has been written."""
    (Path(directory) / PARTIAL_NAME).unlink(missing_ok=True)
