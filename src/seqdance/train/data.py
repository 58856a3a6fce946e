"""Training data: which proteins each rank trains on at each update, their crops, and collation.

Determinism is by construction, not by saved iterator state. For every source group the training proteins
form an endless *stream*: epoch e is a permutation drawn from ``(seed, group, e)``; update u uses stream
positions ``[u·S, (u+1)·S)`` (S = sequences per group per update, all ranks together) and rank r of W takes
the contiguous slice ``r·S/W … (r+1)·S/W`` of them. A crop start is drawn from ``(seed, group, position)``.
So the global batch of an update does not depend on the number of ranks, and resuming at update u needs
nothing but u.

Crops follow the released code: a protein longer than the stage's maximum M tokens is cut to a window of M
consecutive tokens starting uniformly in [0, T−M] (the window keeps <cls>/<eos> only where it reaches
the ends, so no false termini are shown to the model); evaluation windows start at the N-terminus.
A rank's samples of one group and update are sorted by length and cut into micro-batches, each padded to its
longest member (ids with <pad>, targets with -1 so padding is masked out of the loss).
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdance import schema, tokenizer
from seqdance.errors import InputError
from seqdance.train.weights import index_groups

_CROP_SALT = 0x5EC0DA  # separates crop draws from permutation draws
_SPECIAL_TEXT = re.compile(r"<[A-Za-z_0-9]+>")


def token_counts(sequences: pd.Series) -> np.ndarray:
    """Number of ESM tokens of each sequence (``:``- or ``<eos><cls>``-joined chains), vectorised.

    Equals ``len(tokenizer.encode(seq).ids)`` for valid sequences; reading a protein re-checks it.
    """
    text = sequences.astype(str).str.replace(r"\s+", "", regex=True)
    specials = text.str.count(_SPECIAL_TEXT.pattern)
    plain = text.str.replace(_SPECIAL_TEXT.pattern, "", regex=True)
    colons = plain.str.count(tokenizer.CHAIN_SEPARATOR)
    return (2 + specials + plain.str.len() + colons).to_numpy(dtype=np.int64)


def missing_matrix(index: pd.DataFrame) -> np.ndarray:
    """(rows, len(schema.PROPERTY_NAMES)) bool: which properties each protein of a store index lists as missing
    (``missing_properties`` of its provenance, docs/design.md#missing-properties; rows without it have none)."""
    out = np.zeros((len(index), len(schema.PROPERTY_NAMES)), dtype=bool)
    if "provenance" not in index.columns:
        return out
    column = {name: k for k, name in enumerate(schema.PROPERTY_NAMES)}
    for row, text in enumerate(index["provenance"].astype(str)):
        if '"missing_properties"' not in text:  # cheap filter: most proteins miss nothing
            continue
        for name in json.loads(text).get("missing_properties") or ():
            if name in column:
                out[row, column[name]] = True
    return out


@dataclass
class Catalog:
    """Every protein of one or several stores: store number, name, group, split label, token count and which
    properties it lacks (masked for that protein; the loss divides each property by the proteins that have it)."""

    store_id: np.ndarray  # (N,) int
    names: np.ndarray  # (N,) object
    groups: np.ndarray  # (N,) object
    labels: np.ndarray  # (N,) object
    tokens: np.ndarray  # (N,) int64
    missing: np.ndarray | None = None  # (N, len(schema.PROPERTY_NAMES)) bool; None: nothing missing

    @classmethod
    def from_stores(cls, stores: Sequence[Any]) -> Catalog:
        parts = []
        missing = []
        for sid, store in enumerate(stores):
            idx = store.index
            seqs = idx["modify_seq"] if "modify_seq" in idx.columns else idx["sequence"]
            parts.append(pd.DataFrame({
                "store_id": sid,
                "name": idx["name"].astype(str).to_numpy(),
                "group": index_groups(idx).to_numpy(),
                "label": idx["label"].astype(str).to_numpy() if "label" in idx.columns else "train",
                "tokens": token_counts(seqs),
            }))
            missing.append(missing_matrix(idx))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["store_id", "name", "group", "label", "tokens"])
        return cls(
            frame["store_id"].to_numpy(dtype=np.int64),
            frame["name"].to_numpy(dtype=object),
            frame["group"].to_numpy(dtype=object),
            frame["label"].to_numpy(dtype=object),
            frame["tokens"].to_numpy(dtype=np.int64),
            np.concatenate(missing) if missing else np.zeros((0, len(schema.PROPERTY_NAMES)), dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.names)

    def has_properties(self, rows: np.ndarray, group: str) -> np.ndarray:
        """(len(rows), P) bool: whether each protein has each property its group trains (schema order)."""
        columns = [schema.PROPERTY_NAMES.index(p.name) for p in schema.group_properties(group)]
        if self.missing is None:
            return np.ones((len(rows), len(columns)), dtype=bool)
        return ~self.missing[np.asarray(rows, dtype=np.int64)][:, columns]

    def select(self, group: str, label: str | None) -> np.ndarray:
        """Catalog rows of one group (and split label), in catalog order."""
        mask = self.groups == group
        if label is not None:
            mask &= self.labels == label
        return np.flatnonzero(mask)


class GroupStream:
    """The endless shuffled stream of one group's training proteins (see module doc)."""

    def __init__(self, members: np.ndarray, seed: int, group_id: int) -> None:
        if len(members) == 0:
            raise InputError("a group stream needs at least one protein")
        self.members = np.asarray(members, dtype=np.int64)
        self.seed = int(seed)
        self.group_id = int(group_id)
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            rng = np.random.default_rng([self.seed, self.group_id, epoch])
            self._perms[epoch] = rng.permutation(len(self.members))
            while len(self._perms) > 3:
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def items(self, start: int, stop: int) -> np.ndarray:
        """Catalog rows at stream positions ``start … stop-1``."""
        n = len(self.members)
        out = np.empty(stop - start, dtype=np.int64)
        pos = start
        while pos < stop:
            epoch, offset = divmod(pos, n)
            take = min(stop - pos, n - offset)
            out[pos - start : pos - start + take] = self.members[self._perm(epoch)[offset : offset + take]]
            pos += take
        return out


def crop_start(seed: int, group_id: int, position: int, tokens: int, max_tokens: int) -> int:
    """Uniform start of a ``max_tokens`` window in a ``tokens``-long protein (0 when it fits)."""
    if tokens <= max_tokens:
        return 0
    rng = np.random.default_rng([seed, _CROP_SALT, group_id, position])
    return int(rng.integers(0, tokens - max_tokens + 1))


@dataclass(frozen=True)
class SampleSpec:
    """One protein crop to load: catalog row, token window [start, stop)."""

    row: int
    start: int
    stop: int


@dataclass(frozen=True)
class MicroBatchKey:
    """Address of one micro-batch: update (1-based), group, micro-batch number, and its samples."""

    update: int
    group: str
    micro: int
    n_micro: int
    samples: tuple[SampleSpec, ...]


class TrainPlan:
    """Pure function from (update, rank) to the micro-batches that rank trains on (module doc)."""

    def __init__(
        self,
        catalog: Catalog,
        groups: Sequence[str],
        *,
        label: str | None,
        seed: int,
        sequences_per_group: int,
        rank: int = 0,
        world_size: int = 1,
        max_tokens_at: Any,
        micro_batch_at: Any,
    ) -> None:
        if sequences_per_group % world_size:
            raise InputError(
                f"sequences_per_group ({sequences_per_group}) must be divisible by the number of ranks "
                f"({world_size}) so every rank trains on the same number of proteins"
            )
        self.catalog = catalog
        self.seed = int(seed)
        self.sequences_per_group = int(sequences_per_group)
        self.rank, self.world_size = int(rank), int(world_size)
        self.max_tokens_at = max_tokens_at
        self.micro_batch_at = micro_batch_at
        self.groups: list[str] = []
        self.streams: dict[str, GroupStream] = {}
        for g in groups:
            members = catalog.select(g, label)
            if len(members):
                self.groups.append(g)
                self.streams[g] = GroupStream(members, seed, schema.SOURCE_GROUPS.index(g))
        if not self.groups:
            raise InputError(f"no training proteins (split label {label!r}) in any of the groups {list(groups)}")

    @property
    def per_rank(self) -> int:
        return self.sequences_per_group // self.world_size

    def n_micro(self, update: int) -> int:
        return -(-self.per_rank // int(self.micro_batch_at(update)))

    def group_samples(self, update: int, group: str) -> list[SampleSpec]:
        """This rank's crops of one group at one update, longest first."""
        first = (update - 1) * self.sequences_per_group + self.rank * self.per_rank
        rows = self.streams[group].items(first, first + self.per_rank)
        max_tokens = int(self.max_tokens_at(update))
        gid = schema.SOURCE_GROUPS.index(group)
        specs = []
        for k, row in enumerate(rows):
            tokens = int(self.catalog.tokens[row])
            start = crop_start(self.seed, gid, first + k, tokens, max_tokens)
            specs.append(SampleSpec(int(row), start, start + min(tokens, max_tokens)))
        specs.sort(key=lambda s: (-(s.stop - s.start), s.row))
        return specs

    def property_counts(self, update: int, group: str) -> np.ndarray:
        """(P,) number of proteins of the whole update (all ranks) that have each property of the group (schema
        order): what each property's summed per-protein RMSE is divided by, so that a protein lacking a property
        adds no term to its mean (rather than a zero)."""
        first = (update - 1) * self.sequences_per_group
        rows = self.streams[group].items(first, first + self.sequences_per_group)
        return self.catalog.has_properties(rows, group).sum(axis=0)

    def micro_batches(self, update: int, group: str) -> list[MicroBatchKey]:
        specs = self.group_samples(update, group)
        size = int(self.micro_batch_at(update))
        chunks = [tuple(specs[i : i + size]) for i in range(0, len(specs), size)]
        return [MicroBatchKey(update, group, m, len(chunks), c) for m, c in enumerate(chunks)]

    def keys(self, first_update: int, last_update: int) -> Iterator[MicroBatchKey]:
        """Micro-batches of updates ``first_update … last_update`` in training order."""
        for update in range(first_update, last_update + 1):
            for group in self.groups:
                yield from self.micro_batches(update, group)


# --- loading and collation --------------------------------------------------------------------------


@dataclass
class Sample:
    name: str
    ids: np.ndarray  # (t,) int64
    residue: np.ndarray  # (t, C) float32
    pair: np.ndarray  # (t, t, C') float32
    problem: str | None = None  # non-finite targets: which property, where (the caller decides what to do)


@dataclass
class Batch:
    """A padded micro-batch of one source group."""

    group: str
    names: list[str]
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    residue_target: torch.Tensor  # (B, T, C) float32, -1 masked/padding
    pair_target: torch.Tensor  # (B, T, T, C') float32
    update: int = 0
    micro: int = 0
    n_micro: int = 1
    problems: list[str] = field(default_factory=list)  # "protein: what is not finite" (trainer/evaluate refuse)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.group, self.names,
            self.input_ids.to(device, non_blocking=non_blocking),
            self.attention_mask.to(device, non_blocking=non_blocking),
            self.residue_target.to(device, non_blocking=non_blocking),
            self.pair_target.to(device, non_blocking=non_blocking),
            self.update, self.micro, self.n_micro, self.problems,
        )

    def pin_memory(self) -> Batch:
        return Batch(
            self.group, self.names, self.input_ids.pin_memory(), self.attention_mask.pin_memory(),
            self.residue_target.pin_memory(), self.pair_target.pin_memory(), self.update, self.micro, self.n_micro,
            self.problems,
        )


def load_sample(store: Any, name: str, start: int, stop: int | None, *,
                target_clamp: Sequence[float] | None = None) -> Sample:
    """Read one protein's token window [start, stop) (whole protein when ``stop`` is None) from a store."""
    window = None if stop is None else (start, stop)
    prot = store.read(name, window=window)
    ids = tokenizer.encode(prot.sequence, seq_id=name).ids
    residue, pair = np.asarray(prot.residue, dtype=np.float32), np.asarray(prot.pair, dtype=np.float32)
    if window is not None:
        ids = ids[start:stop]
    if residue.shape[0] != len(ids) or pair.shape[:2] != (len(ids), len(ids)):
        raise InputError(
            f"store {getattr(store, 'path', '')}: protein {name!r}: targets have {residue.shape[0]} rows "
            f"(pair {pair.shape[:2]}) but its sequence gives {len(ids)} tokens"
            + (f" in window [{start}, {stop})" if window is not None else "")
        )
    problem = None
    if not (np.isfinite(residue).all() and np.isfinite(pair).all()):  # a corrupt store: named, never trained on
        kind = prot.kind  # type: ignore[assignment]
        found = [t for t in (schema.nonfinite_summary(residue, "residue", kind),  # type: ignore[arg-type]
                             schema.nonfinite_summary(pair, "pair", kind)) if t]  # type: ignore[arg-type]
        where = f" (window [{start}, {stop}))" if window is not None else ""
        problem = (f"store {getattr(store, 'path', '')}: protein {name!r}{where} has non-finite targets: "
                   f"{'; '.join(found)} (run 'seqdance dataset check' on the store)")
    if target_clamp is not None:
        lo, hi = float(target_clamp[0]), float(target_clamp[1])
        residue = np.where(residue == schema.MASK_VALUE, residue, np.clip(residue, lo, hi))
        pair = np.where(pair == schema.MASK_VALUE, pair, np.clip(pair, lo, hi))
    return Sample(name, ids, residue, pair, problem)


def collate(samples: Sequence[Sample], group: str) -> Batch:
    """Pad a list of samples of one group into a :class:`Batch`."""
    if not samples:
        raise InputError("cannot collate an empty micro-batch")
    kind = schema.GROUP_KIND[group]
    c_res, c_pair = schema.stored_width("residue", kind), schema.stored_width("pair", kind)
    width = max(len(s.ids) for s in samples)
    b = len(samples)
    ids = np.full((b, width), tokenizer.PAD_ID, dtype=np.int64)
    mask = np.zeros((b, width), dtype=np.int64)
    res = np.full((b, width, c_res), schema.MASK_VALUE, dtype=np.float32)
    pair = np.full((b, width, width, c_pair), schema.MASK_VALUE, dtype=np.float32)
    for i, s in enumerate(samples):
        t = len(s.ids)
        if s.residue.shape[-1] != c_res or s.pair.shape[-1] != c_pair:
            raise InputError(
                f"protein {s.name!r} has {s.residue.shape[-1]}/{s.pair.shape[-1]} residue/pair target channels, "
                f"but group {group!r} trains the {kind} block ({c_res}/{c_pair})"
            )
        ids[i, :t] = s.ids
        mask[i, :t] = 1
        res[i, :t] = s.residue
        pair[i, :t, :t] = s.pair
    return Batch(group, [s.name for s in samples], torch.from_numpy(ids), torch.from_numpy(mask),
                 torch.from_numpy(res), torch.from_numpy(pair),
                 problems=[s.problem for s in samples if s.problem])


class StoreSet:
    """Opened stores, re-opened lazily in each process (safe in DataLoader workers)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]],
                 index: Sequence[str | os.PathLike[str] | None] | None = None) -> None:
        from seqdance.store import DynamicsStore

        self.paths = [str(p) for p in paths]
        indexes = list(index) if index is not None else [None] * len(self.paths)
        self.stores = [DynamicsStore.open(p, index=i or None) for p, i in zip(self.paths, indexes)]

    def __getitem__(self, i: int) -> Any:
        return self.stores[i]

    def __len__(self) -> int:
        return len(self.stores)


class MicroBatchDataset(torch.utils.data.Dataset):
    """Map-style dataset whose items are :class:`MicroBatchKey` → collated :class:`Batch`."""

    def __init__(self, stores: Sequence[Any], catalog: Catalog, *, target_clamp: Sequence[float] | None = None):
        self.stores = stores
        self.catalog = catalog
        self.target_clamp = target_clamp

    def __getitem__(self, key: MicroBatchKey) -> Batch:  # type: ignore[override]
        samples = [
            load_sample(self.stores[int(self.catalog.store_id[s.row])], str(self.catalog.names[s.row]),
                        s.start, s.stop, target_clamp=self.target_clamp)
            for s in key.samples
        ]
        batch = collate(samples, key.group)
        batch.update, batch.micro, batch.n_micro = key.update, key.micro, key.n_micro
        return batch


class _KeySampler(torch.utils.data.Sampler):
    def __init__(self, keys: Iterator[MicroBatchKey]) -> None:
        self._keys = keys

    def __iter__(self) -> Iterator[MicroBatchKey]:
        return self._keys


def micro_batch_loader(
    dataset: MicroBatchDataset,
    plan: TrainPlan,
    first_update: int,
    last_update: int,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Micro-batches of ``first_update … last_update`` in order, loaded ahead by ``num_workers`` processes.

    The loader draws no random numbers from the global generators (crops are pre-drawn in the plan), so
    using it does not perturb dropout RNG streams: resumed runs see the same numbers.
    """
    keys = plan.keys(first_update, last_update)
    if num_workers == 0:
        return (dataset[k] for k in keys)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=_KeySampler(keys),
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


def eval_samples(catalog: Catalog, group: str, label: str, max_tokens: int, *,
                 rank: int = 0, world_size: int = 1) -> list[SampleSpec]:
    """N-terminal windows of every protein of one group and split (this rank's share, strided)."""
    rows = catalog.select(group, label)[rank::world_size]
    return [SampleSpec(int(r), 0, int(min(catalog.tokens[r], max_tokens))) for r in rows]


def eval_batches(dataset: MicroBatchDataset, specs: Sequence[SampleSpec], group: str, batch_size: int
                 ) -> Iterator[Batch]:
    """Collated evaluation batches of similar lengths."""
    ordered = sorted(specs, key=lambda s: (-(s.stop - s.start), s.row))
    for i in range(0, len(ordered), batch_size):
        chunk = tuple(ordered[i : i + batch_size])
        yield dataset[MicroBatchKey(0, group, i // batch_size, -(-len(ordered) // batch_size), chunk)]
