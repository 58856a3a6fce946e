"""Run the attention metrics (:mod:`seqdance.analysis.attention`) of a model over the proteins of a store.

Any model with an ESM2 encoder works: a SeqDance/ESMDance :class:`~seqdance.model.DynamicsModel` (encoder
``esm2``), a plain ESM2 :class:`~seqdance.model.EsmMaskedLM` (encoder ``esm``) or a bare encoder. Each protein
runs alone (no padding) on its first 1,024 tokens; every layer's attention probabilities are scored as the
encoder produces them (its ``attention_hook``), so the layers × heads × T × T stack never exists.

:func:`analyze_attention` returns the per-head table in memory. :func:`run_attention_analysis` is the command's
run, through the one run protocol (:class:`seqdance.inference.sharded_run.ShardedRun`, layout
:class:`AttentionLayout`): one table per protein (``proteins/<name>.csv``, its content key in ``.json`` beside
it: the protein's store entry, the model fingerprint, the token limit), reused only when it checks out (its key
and one complete row per layer × head), combined into ``per_head.csv`` and the report; shardable like
``predict``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqdance import tokenizer
from seqdance.analysis.attention import (
    MAX_TOKENS,
    MIN_TOKENS,
    AttentionMetricPlan,
    attention_targets,
    rows_for_protein,
)
from seqdance.analysis.models import encoder_of
from seqdance.devices import eval_mode
from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.sharded_run import (
    RunItem,
    RunLayout,
    RunReport,
    ShardedRun,
    Verdict,
    WorkUnit,
    csv_with_record_verdict,
)
from seqdance.inference.sharding import Shard, input_cost, text_digest
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


def check_max_tokens(max_tokens: int) -> None:
    """Refuse a token limit below :data:`MIN_TOKENS`, under which every metric is NaN."""
    if int(max_tokens) < MIN_TOKENS:
        raise InputError(f"max_tokens must be at least {MIN_TOKENS} (<cls> and 8 residues, so that two residue "
                         f"pairs with |i - j| > 5 exist), got {max_tokens}")


def without_pair_targets(store: DynamicsStore, split: str | None, names: Sequence[str] | None = None) -> list[str]:
    """The proteins of the selection that cannot be analysed: entries without MD pair targets (NMA), which a
    split's selection leaves out (named ones are refused by :func:`select_proteins` instead)."""
    if names:
        return []
    index = store.index
    chosen = index if split is None else index[index["label"] == split]
    return [str(n) for n, kind in zip(chosen["name"], chosen["kind"]) if kind != "md"]


def selection_words(split: str | None) -> str:
    """How a selection is named in messages: ``split 'test'`` or ``the store``."""
    return "the store" if split is None else f"split {split!r}"


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
) -> pd.DataFrame:
    """per_head table: one row per protein × layer × head (protein, source, group, layer, head, metrics...)."""
    check_max_tokens(max_tokens)
    encoder = attention_encoder(model, description)
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    chosen = select_proteins(store, split, names)
    rows = []
    from tqdm.auto import tqdm

    for name in tqdm(chosen, desc="analyze attention", unit="protein", disable=not progress):
        rows += _protein_rows(encoder, store, name, max_tokens, dev)
    return pd.DataFrame(rows)


PROTEINS_DIR = "proteins"
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


class AttentionLayout(RunLayout):
    """``proteins/<name>.csv`` + ``.json`` per protein, combined into ``per_head.csv`` and the report."""

    command = "analyze-attention"
    unit_noun = ("protein", "proteins")

    def paths(self, item: RunItem) -> tuple[Path, Path]:
        folder = self.target / PROTEINS_DIR
        return folder / f"{item.output}.csv", folder / f"{item.output}.json"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        """Refuse a folder holding the analysis of another run (model, store, split or token limit)."""
        state = {k: self.run[k] for k in ("model", "store", "split", "proteins", "max_tokens")}
        path = self.target / STATE_NAME
        if path.is_file() and not overwrite:
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError):
                previous = None
            if isinstance(previous, dict) and previous != state:
                differs = sorted(k for k in state if previous.get(k) != state[k])
                raise InputError(f"{self.target} holds an attention analysis of another run ({', '.join(differs)} "
                                 "differ); use another output folder or --overwrite")
        (self.target / PROTEINS_DIR).mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(state, indent=1))

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        return [csv_with_record_verdict(*self.paths(item), item, int(item.expect["n_rows"])) for item in items]

    def read(self, item: RunItem) -> pd.DataFrame:
        table, _ = self.paths(item)
        return pd.read_csv(table, dtype={c: str for c in ("protein", "source", "group")}, keep_default_na=True)

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        from seqdance.analysis.attention_report import write_attention_report

        per_head = pd.concat([self.read(item) for item in items], ignore_index=True)
        write_attention_report(per_head, self.target, title=self.run["title"], left_out=self.run.get("left_out", []),
                               selection=selection_words(self.run.get("split")))
        return len(per_head)


def run_attention_analysis(
    model: torch.nn.Module,
    store: DynamicsStore,
    out_dir: str | os.PathLike[str],
    *,
    split: str | None = "test",
    names: Sequence[str] | None = None,
    max_tokens: int = MAX_TOKENS,
    device: torch.device | str | None = None,
    progress: bool = False,
    description: str = "model",
    title: str = "model",
    shard: Shard | None = None,
    overwrite: bool = False,
) -> RunReport:
    """Analyse every chosen protein (or this shard's) into ``out_dir``; see the module docstring.

    When the run is complete, ``out_dir`` holds ``per_head.csv``, ``summary.csv``, ``best_heads.csv``,
    ``summary.md`` and the heat maps (``report.merged``). Proteins of the split without MD pair targets are left
    out and named in summary.md (:func:`without_pair_targets`).
    """
    check_max_tokens(max_tokens)
    encoder = attention_encoder(model, description)
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    chosen = select_proteins(store, split, names)
    fingerprint = module_fingerprint(model)
    n_rows = encoder.config.num_layers * encoder.config.num_heads
    from seqdance.inference.prediction_io import unique_stems

    stems = unique_stems(chosen)
    options = json.dumps({"max_tokens": int(max_tokens)})
    items, units = [], []
    for k, name in enumerate(chosen):
        sequence = str(store.row(name).get("modify_seq", ""))
        items.append(RunItem(k, name, stems[name], {"sequence": text_digest(sequence),
                                                    "protein": store_fingerprint(store, [name]),
                                                    "model": fingerprint, "options": options,
                                                    "n_rows": str(n_rows)}))
        units.append(WorkUnit((k,), input_cost(min(len(sequence) + 2, int(max_tokens)), quadratic=True)))
    run = {"model": fingerprint, "store": store_fingerprint(store, chosen), "split": split, "proteins": chosen,
           "max_tokens": int(max_tokens), "title": title, "left_out": without_pair_targets(store, split, names)}
    layout = AttentionLayout(out_dir, run, shard)
    sharded = ShardedRun(layout, items, units, shard=shard, overwrite=overwrite)

    def compute(selected: list[WorkUnit], pending: set[int]) -> None:
        from tqdm.auto import tqdm

        for k in tqdm(sorted(pending), desc="analyze attention", unit="protein", disable=not progress):
            rows = _protein_rows(encoder, store, chosen[k], max_tokens, dev)
            table, meta = layout.paths(items[k])
            with atomic_path(table) as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.17g")
            with atomic_path(meta) as tmp:  # written last: a table without it is recomputed
                tmp.write_text(json.dumps({"content_key": items[k].key, **items[k].expect}, indent=1,
                                          sort_keys=True) + "\n")
            sharded.throughput.add(1, min(len(str(store.row(chosen[k]).get("modify_seq", ""))) + 2,
                                          int(max_tokens)))

    return sharded.execute(compute)
