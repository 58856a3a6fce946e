"""Loss weights per (source group, property): computed from a store by the docs/design.md#loss-weights rules, or loaded.

**Rules.** For every training protein and property the *baseline* is the RMSE of predicting the protein's own
mean (one mean per channel; channels of a multi-channel property pooled), averaged over the group's proteins.
A weight is ``share / baseline`` so that the weighted baseline loss of a property equals its target share:

* MD groups (``md``, ``idr``): residue : pair = 1 : 3; the seven residue properties (SASA mean/std, RMSF, SS,
  chi, phi, psi) have equal shares; the nine interactions have equal shares and together 3× the movement
  correlation;
* NMA group: the frequency ranges have equal shares and within each range pair : residue = 3 : 1;
* every group's shares sum to 1, so the three groups contribute equally.

Working back from the released table (its weights × plausible baselines give ≈1/28 for each MD residue
property and ≈1/4 for each NMA pair range) these shares reproduce its scale.

**Table layout** (CSV). The released ``source_feature_rmse_weight.csv`` of the HF dataset
``ChaoHou/protein_dynamic_properties`` is wide: the first column holds property names (the index), and one
column per source group, labelled by the sources it pools (``ATLAS_GPCRmd_PED_mdCATH``, ``IDRome``,
``Proteinflow``); properties a group does not train hold 0. We write the same layout with our group names
(``md``, ``idr``, ``nma``) as column labels. :func:`load_loss_weights` also accepts the transposed layout
(groups as rows) and a long layout (columns ``group``, ``property``, ``weight``); column labels are mapped to
groups through :func:`seqdance.schema.source_group` (``IDRome`` → idr, ``Proteinflow`` → nma, ...).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqdance import schema
from seqdance.errors import InputError, NonFiniteError
from seqdance.io_utils import atomic_path, read_csv_table

log = logging.getLogger(__name__)

#: Pairwise : residue share within an MD group and within each NMA frequency range.
PAIR_TO_RESIDUE = 3.0
#: The nine interactions together : the movement correlation.
INTERACTIONS_TO_CORRELATION = 3.0


# --- shares -----------------------------------------------------------------------------------------


def target_shares(group: str) -> dict[str, float]:
    """Share of the group's weighted baseline loss each property should carry (sums to 1)."""
    kind = schema.GROUP_KIND.get(group)
    if kind is None:
        raise InputError(f"unknown source group {group!r}; expected one of {schema.SOURCE_GROUPS}")
    residue = schema.properties_of_kind(kind, "residue")
    pair = schema.properties_of_kind(kind, "pair")
    pair_total = PAIR_TO_RESIDUE / (1.0 + PAIR_TO_RESIDUE)
    shares: dict[str, float] = {}
    if kind == "md":
        for p in residue:
            shares[p.name] = (1.0 - pair_total) / len(residue)
        interactions = [p for p in pair if p.name in schema.INTERACTION_NAMES]
        others = [p for p in pair if p.name not in schema.INTERACTION_NAMES]
        inter_total = pair_total * INTERACTIONS_TO_CORRELATION / (1.0 + INTERACTIONS_TO_CORRELATION)
        for p in interactions:
            shares[p.name] = inter_total / len(interactions)
        for p in others:
            shares[p.name] = (pair_total - inter_total) / len(others)
    else:
        if len(residue) != len(pair):
            raise InputError("NMA properties must come in residue/pair pairs, one per frequency range")
        per_range = 1.0 / len(residue)
        for res_p, pair_p in zip(residue, pair):
            shares[res_p.name] = per_range * (1.0 - pair_total)
            shares[pair_p.name] = per_range * pair_total
    return shares


# --- weight table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """``table[group][property]`` = weight of that property's loss in that group's loss."""

    table: Mapping[str, Mapping[str, float]]
    origin: str = ""

    def for_group(self, group: str) -> dict[str, float]:
        """Weights of every property the group trains (raises naming what is missing)."""
        if group not in self.table:
            raise InputError(f"loss weights{self._from()} have no column for source group {group!r} "
                             f"(groups present: {sorted(self.table)})")
        row = self.table[group]
        names = [p.name for p in schema.group_properties(group)]
        missing = [n for n in names if n not in row]
        if missing:
            raise InputError(f"loss weights{self._from()} for group {group!r} lack properties {missing}")
        return {n: float(row[n]) for n in names}

    def _from(self) -> str:
        return f" from {self.origin}" if self.origin else ""

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g for g in schema.SOURCE_GROUPS if g in self.table)

    def to_frame(self) -> pd.DataFrame:
        """Wide table: one row per schema property, one column per group (0 where a group does not train it)."""
        data = {
            g: [float(self.table[g].get(name, 0.0)) for name in schema.PROPERTY_NAMES] for g in self.groups
        }
        frame = pd.DataFrame(data, index=pd.Index(schema.PROPERTY_NAMES, name="property"))
        return frame

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the wide table atomically (the released layout, our group names as column labels)."""
        with atomic_path(path) as tmp:
            self.to_frame().to_csv(tmp, float_format="%.9g")
        return Path(path)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {g: {k: float(v) for k, v in row.items()} for g, row in self.table.items()}


#: A baseline RMSE counts as at least this share of the largest baseline among the group's properties of its
#: family (same level and activation: e.g. the nine interaction types). Rare interactions (pi-stacking,
#: T-stacking) have baselines near zero when few proteins are seen, and ``share / baseline`` would then blow up;
#: in the released table the smallest such ratio is about 4%, so the floor leaves it alone. 0 disables it.
BASELINE_FLOOR = 0.02
#: No weight exceeds this multiple of the median weight of its group (the released table's largest ratio is
#: about 20). ``None`` disables the cap.
MAX_WEIGHT_RATIO: float | None = 25.0


@dataclass(frozen=True)
class WeightAdjustment:
    """A property whose weight the baseline floor or the weight cap changed (reported as a warning)."""

    group: str
    prop: str
    baseline: float  # the measured mean baseline RMSE
    used_baseline: float  # after the floor
    rule_weight: float  # share / measured baseline (inf for a zero baseline)
    weight: float  # what is used
    floored: bool
    capped: bool
    n_proteins: int | None = None

    def message(self) -> str:
        seen = f" (from {self.n_proteins} training protein(s))" if self.n_proteins is not None else ""
        why = []
        if self.floored:
            why.append(f"its baseline RMSE {self.baseline:.3g}{seen} is near zero and was floored to "
                       f"{self.used_baseline:.3g}")
        if self.capped:
            why.append("the weight was capped relative to the group's median weight")
        return (f"group {self.group}: loss weight of {self.prop} is {self.weight:.3g} instead of "
                f"{self.rule_weight:.3g}: " + "; ".join(why))


def weights_from_baselines(
    baselines: Mapping[str, Mapping[str, float]],
    *,
    n_proteins: Mapping[str, Mapping[str, int]] | None = None,
    baseline_floor: float = BASELINE_FLOOR,
    max_weight_ratio: float | None = MAX_WEIGHT_RATIO,
    adjustments: list[WeightAdjustment] | None = None,
) -> LossWeights:
    """Weights ``share / baseline`` for every group in ``baselines`` (group -> property -> mean baseline RMSE).

    A baseline below ``baseline_floor`` × the group's largest baseline in its family (same level and activation,
    e.g. the nine interactions) is raised to that, and
    no weight exceeds ``max_weight_ratio`` × the group's median weight; each property changed so is logged as a
    warning (and appended to ``adjustments``). ``baseline_floor=0, max_weight_ratio=None`` is the plain rule.
    A property without a usable baseline (no valid data in the group, or not finite) gets weight 0 and a warning.
    """
    table: dict[str, dict[str, float]] = {}
    for group, row in baselines.items():
        shares = target_shares(group)
        family = {p.name: (p.level, p.activation) for p in schema.group_properties(group)}
        usable = {n: float(row[n]) for n in shares if row.get(n) is not None and math.isfinite(row[n])
                  and row[n] >= 0}
        largest = {f: max([b for n, b in usable.items() if family[n] == f], default=0.0) for f in family.values()}
        out: dict[str, float] = {}
        used: dict[str, float] = {}
        for name, share in shares.items():
            base = usable.get(name)
            floor = baseline_floor * largest[family[name]]
            if base is None or max(base, floor) <= 0:
                log.warning("group %s: property %s has no usable baseline RMSE (%s); its loss weight is 0",
                            group, name, row.get(name, float("nan")))
                out[name] = 0.0
                continue
            used[name] = max(base, floor)
            out[name] = share / used[name]
        if max_weight_ratio is not None:
            positive = [w for w in out.values() if w > 0]
            cap = max_weight_ratio * float(np.median(positive)) if positive else math.inf
            out = {n: min(w, cap) for n, w in out.items()}
        for name, weight in out.items():
            if name not in used:
                continue
            floored = used[name] != usable[name]
            capped = weight < shares[name] / used[name]
            if floored or capped:
                rule = shares[name] / usable[name] if usable[name] > 0 else math.inf
                note = WeightAdjustment(group, name, usable[name], used[name], rule, weight, floored, capped,
                                        (n_proteins or {}).get(group, {}).get(name))
                log.warning("%s", note.message())
                if adjustments is not None:
                    adjustments.append(note)
        table[group] = out
    return LossWeights(table, origin="computed from baselines")


# --- loading ----------------------------------------------------------------------------------------


_LABEL_SPLIT = re.compile(r"[_+,;/ ]+")


def group_of_label(label: str) -> str:
    """Source group named by a column label of a weight table.

    Accepts a group name (``md``), a known source (``mdCATH``), or several sources joined by ``_``
    (``ATLAS_GPCRmd_PED_mdCATH``); a source may be abbreviated to the part before its own ``_``
    (``Proteinflow`` for ``proteinflow_pdb``/``proteinflow_sabdab``). Raises naming the label otherwise.
    """
    text = str(label).strip()
    if text.lower() in schema.GROUP_KIND:
        return text.lower()
    try:
        return schema.source_group(text)
    except ValueError:
        pass
    known = {k.lower(): g for k, g in schema.KNOWN_SOURCES.items()}
    groups: set[str] = set()
    for token in filter(None, _LABEL_SPLIT.split(text.lower())):
        hits = {g for src, g in known.items() if src == token or src.startswith(token + "_")}
        if len(hits) != 1:
            groups = set()
            break
        groups |= hits
    if len(groups) == 1:
        return groups.pop()
    raise InputError(
        f"cannot tell which source group the weight-table column {label!r} belongs to; use one of "
        f"{schema.SOURCE_GROUPS} or source names such as {sorted(schema.KNOWN_SOURCES)}"
    )


def _wide_to_table(frame: pd.DataFrame, origin: str) -> dict[str, dict[str, float]]:
    """Rows = properties, columns = group labels."""
    unknown = [str(i) for i in frame.index if str(i) not in schema.PROPERTY_BY_NAME]
    if unknown:
        raise InputError(f"{origin}: unknown property name(s) {unknown} in the weight table; known: "
                         f"{', '.join(schema.PROPERTY_NAMES)}")
    table: dict[str, dict[str, float]] = {}
    for col in frame.columns:
        group = group_of_label(col)
        if group in table:
            raise InputError(f"{origin}: two columns map to source group {group!r}")
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = [str(i) for i, v in values.items() if not np.isfinite(v)]
        if bad:
            raise InputError(f"{origin}: column {col!r} has non-numeric weights for {bad}")
        trained = {p.name for p in schema.group_properties(group)}
        stray = [str(i) for i, v in values.items() if str(i) not in trained and v != 0]
        if stray:
            log.warning("%s: column %s gives non-zero weights to %s, which group %s does not train; ignored",
                        origin, col, stray, group)
        table[group] = {str(i): float(v) for i, v in values.items() if str(i) in trained}
    return table


def load_loss_weights(path: str | os.PathLike[str]) -> LossWeights:
    """Read a weight table (our CSV or the released ``source_feature_rmse_weight.csv``; see module doc)."""
    origin = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"loss weight table not found: {path}")
    raw = read_csv_table(path)
    if raw.empty:
        raise InputError(f"{origin}: the weight table is empty")
    lower = {str(c).lower(): c for c in raw.columns}
    if {"group", "property", "weight"} <= set(lower):
        long = raw.rename(columns={lower["group"]: "group", lower["property"]: "property",
                                   lower["weight"]: "weight"})
        frame = long.pivot_table(index="property", columns="group", values="weight", aggfunc="first")
        frame = frame.fillna(0.0)
    else:
        frame = raw.set_index(raw.columns[0])
        frame.index = frame.index.map(lambda v: str(v).strip())
        if not any(i in schema.PROPERTY_BY_NAME for i in frame.index) and any(
            str(c).strip() in schema.PROPERTY_BY_NAME for c in frame.columns
        ):
            frame = frame.T  # groups as rows, properties as columns
            frame.index = frame.index.map(lambda v: str(v).strip())
    table = _wide_to_table(frame, origin)
    for group, row in table.items():
        missing = [p.name for p in schema.group_properties(group) if p.name not in row]
        if missing:
            raise InputError(f"{origin}: group {group!r} (column) lacks weights for {missing}")
    return LossWeights(table, origin=origin)


# --- statistics of a store --------------------------------------------------------------------------


def protein_baselines(residue: np.ndarray, pair: np.ndarray | None, kind: str) -> dict[str, float]:
    """RMSE of predicting one protein's own mean, per property (NaN where it has no valid entry).

    ``residue`` (T,C) and ``pair`` (T,T,C') are stored targets of the given kind (-1 = masked). Each channel
    is predicted by its own mean over the protein's valid entries; the RMSE pools the property's channels.
    """
    out: dict[str, float] = {}
    blocks = {"residue": residue, "pair": pair}
    for prop in schema.properties_of_kind(kind):  # type: ignore[arg-type]
        arr = blocks[prop.level]
        if arr is None:
            out[prop.name] = float("nan")
            continue
        vals = np.asarray(arr[..., prop.store_channels], dtype=np.float64).reshape(-1, prop.width)
        valid = vals != schema.MASK_VALUE
        n = valid.sum(axis=0)
        if n.sum() == 0:
            out[prop.name] = float("nan")
            continue
        means = np.where(n > 0, np.where(valid, vals, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)
        sq = np.where(valid, (vals - means) ** 2, 0.0).sum()
        out[prop.name] = float(np.sqrt(sq / n.sum()))
    return out


@dataclass
class _Accumulator:
    baseline_sum: dict[str, float] = field(default_factory=dict)
    baseline_n: dict[str, int] = field(default_factory=dict)
    residue_sum: np.ndarray | None = None
    residue_n: np.ndarray | None = None
    pair_sum: np.ndarray | None = None
    pair_n: np.ndarray | None = None
    n_proteins: int = 0

    def add(self, residue: np.ndarray, pair: np.ndarray | None, kind: str) -> None:
        self.n_proteins += 1
        for name, value in protein_baselines(residue, pair, kind).items():
            if math.isfinite(value):
                self.baseline_sum[name] = self.baseline_sum.get(name, 0.0) + value
                self.baseline_n[name] = self.baseline_n.get(name, 0) + 1
        for level, arr in (("residue", residue), ("pair", pair)):
            if arr is None:
                continue
            vals = np.asarray(arr, dtype=np.float64).reshape(-1, arr.shape[-1])
            valid = vals != schema.MASK_VALUE
            s, n = np.where(valid, vals, 0.0).sum(axis=0), valid.sum(axis=0)
            cur_s, cur_n = getattr(self, f"{level}_sum"), getattr(self, f"{level}_n")
            setattr(self, f"{level}_sum", s if cur_s is None else cur_s + s)
            setattr(self, f"{level}_n", n if cur_n is None else cur_n + n)


@dataclass
class StoreStatistics:
    """Baselines and channel means of the training proteins of each source group."""

    baselines: dict[str, dict[str, float]]  # group -> property -> mean per-protein baseline RMSE
    n_proteins: dict[str, dict[str, int]]  # group -> property -> proteins with valid entries
    residue_means: dict[str, np.ndarray]  # group -> (C_res stored,) mean target of each channel
    pair_means: dict[str, np.ndarray]  # group -> (C_pair stored,)
    #: Floor and cap of :func:`weights_from_baselines` (0 and None: the plain docs/design.md#loss-weights rule).
    baseline_floor: float = BASELINE_FLOOR
    max_weight_ratio: float | None = MAX_WEIGHT_RATIO
    _weights: LossWeights | None = field(default=None, repr=False)
    _adjustments: list[WeightAdjustment] = field(default_factory=list, repr=False)

    def weights(self) -> LossWeights:
        """The loss weights (computed once; floored or capped properties are logged as warnings)."""
        if self._weights is None:
            self._adjustments = []
            self._weights = weights_from_baselines(
                self.baselines, n_proteins=self.n_proteins, baseline_floor=self.baseline_floor,
                max_weight_ratio=self.max_weight_ratio, adjustments=self._adjustments,
            )
        return self._weights

    @property
    def adjustments(self) -> list[WeightAdjustment]:
        """Properties whose weight the floor or the cap changed."""
        self.weights()
        return list(self._adjustments)

    def details_frame(self) -> pd.DataFrame:
        """Long table: group, property, n_proteins, baseline_rmse, share, weight, adjusted (floored/capped)."""
        weights = self.weights()
        changed = {(a.group, a.prop): "+".join(k for k, on in (("floored", a.floored), ("capped", a.capped)) if on)
                   for a in self._adjustments}
        rows = []
        for group, row in self.baselines.items():
            shares = target_shares(group)
            for name in shares:
                rows.append({
                    "group": group,
                    "property": name,
                    "n_proteins": self.n_proteins[group].get(name, 0),
                    "baseline_rmse": row.get(name, float("nan")),
                    "share": shares[name],
                    "weight": weights.table[group][name],
                    "adjusted": changed.get((group, name), ""),
                })
        return pd.DataFrame(rows)

    def channel_means_frame(self) -> pd.DataFrame:
        """Long table: group, level, channel (model layout), property, mean (training mean of the target)."""
        rows = []
        for group in self.residue_means:
            kind = schema.GROUP_KIND[group]
            for level, means in (("residue", self.residue_means[group]), ("pair", self.pair_means[group])):
                for prop in schema.properties_of_kind(kind, level):  # type: ignore[arg-type]
                    for k, ch in enumerate(range(prop.store_channels.start, prop.store_channels.stop)):
                        rows.append({"group": group, "level": level, "channel": prop.start + k,
                                     "property": prop.name, "mean": float(means[ch])})
        return pd.DataFrame(rows)


def index_groups(index: pd.DataFrame) -> pd.Series:
    """Source group of every row of a store index (its ``group`` column, else mapped from ``source``)."""
    if "group" in index.columns:
        return index["group"].astype(str)
    return index["source"].astype(str).map(schema.source_group)


def select_names(
    index: pd.DataFrame,
    *,
    split: str | None,
    groups: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Protein names per source group of one split label (``None`` = all rows), in index order."""
    frame = index
    if split is not None:
        if "label" not in frame.columns:
            raise InputError("the store index has no 'label' column, so split {split!r} cannot be selected")
        frame = frame[frame["label"].astype(str) == split]
    grp = index_groups(frame)
    wanted = list(groups) if groups is not None else list(schema.SOURCE_GROUPS)
    return {g: frame["name"][grp == g].astype(str).tolist() for g in wanted}


def compute_store_statistics(
    stores: Any,
    *,
    split: str | None = "train",
    groups: Iterable[str] | None = None,
    max_proteins_per_group: int | None = None,
    seed: int = 0,
    progress: bool = False,
    baseline_floor: float = BASELINE_FLOOR,
    max_weight_ratio: float | None = MAX_WEIGHT_RATIO,
) -> StoreStatistics:
    """One pass over the training proteins of one or several stores: per-property baselines, channel means.

    ``stores`` is a :class:`seqdance.store.DynamicsStore` (``.index``, ``.read(name)``) or a list of them.
    ``max_proteins_per_group`` estimates from a random subset (seeded) to keep the pass short on big stores.
    ``baseline_floor`` / ``max_weight_ratio``: see :func:`weights_from_baselines`.
    """
    store_list = list(stores) if isinstance(stores, (list, tuple)) else [stores]
    wanted = list(groups) if groups is not None else list(schema.SOURCE_GROUPS)
    todo: list[tuple[str, int, str]] = []
    for sid, store in enumerate(store_list):
        for group, group_names in select_names(store.index, split=split, groups=wanted).items():
            todo.extend((group, sid, n) for n in group_names)
    if max_proteins_per_group is not None:
        rng = np.random.default_rng(seed)
        kept: list[tuple[str, int, str]] = []
        for group in wanted:
            members = [t for t in todo if t[0] == group]
            if len(members) > max_proteins_per_group:
                picked = sorted(rng.choice(len(members), size=max_proteins_per_group, replace=False))
                members = [members[i] for i in picked]
            kept.extend(members)
        todo = kept
    acc = {g: _Accumulator() for g in wanted}
    iterator: Iterable[tuple[str, int, str]] = todo
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="loss-weights", unit="protein")
    for group, sid, name in iterator:
        prot = store_list[sid].read(name)
        from seqdance.store.hdf5 import check_finite_targets

        try:  # a NaN target would silently drop the protein from the baselines and poison the means
            check_finite_targets(name, prot.residue, prot.pair, prot.kind)
        except NonFiniteError as exc:
            raise NonFiniteError(f"store {store_list[sid].path}: {exc} (run 'seqdance dataset check')") from None
        acc[group].add(np.asarray(prot.residue), None if prot.pair is None else np.asarray(prot.pair),
                       schema.GROUP_KIND[group])
    baselines: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    res_means: dict[str, np.ndarray] = {}
    pair_means: dict[str, np.ndarray] = {}
    for group, a in acc.items():
        if a.n_proteins == 0:
            continue
        baselines[group] = {
            p.name: (a.baseline_sum[p.name] / a.baseline_n[p.name]) if a.baseline_n.get(p.name) else float("nan")
            for p in schema.group_properties(group)
        }
        counts[group] = {p.name: a.baseline_n.get(p.name, 0) for p in schema.group_properties(group)}
        kind = schema.GROUP_KIND[group]
        for level, store_to in (("residue", res_means), ("pair", pair_means)):
            s, n = getattr(a, f"{level}_sum"), getattr(a, f"{level}_n")
            width = schema.stored_width(level, kind)  # type: ignore[arg-type]
            if s is None:
                store_to[group] = np.full(width, np.nan)
            else:
                store_to[group] = np.where(n > 0, s / np.maximum(n, 1), np.nan)
    if not baselines:
        raise InputError(f"no proteins with split label {split!r} in the store(s) for groups {wanted}")
    return StoreStatistics(baselines, counts, res_means, pair_means, baseline_floor=baseline_floor,
                           max_weight_ratio=max_weight_ratio)


def write_statistics(stats: StoreStatistics, path: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the weight table to ``path`` and, beside it, ``*_details.csv`` and ``*_channel_means.csv``."""
    target = Path(path)
    stem = target.with_suffix("")
    out = {"weights": stats.weights().write_csv(target)}
    for key, frame in (("details", stats.details_frame()), ("channel_means", stats.channel_means_frame())):
        p = Path(f"{stem}_{key}.csv")
        with atomic_path(p) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.9g")
        out[key] = p
    return out


def read_channel_means(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
    """Read a ``*_channel_means.csv`` back: group -> {"residue": (C,), "pair": (C',)} in store layout."""
    frame = read_csv_table(path)
    need = {"group", "level", "channel", "mean"}
    if not need <= set(frame.columns):
        raise InputError(f"{path}: a channel-means table needs columns {sorted(need)}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for (group, level), sub in frame.groupby(["group", "level"]):
        kind = schema.GROUP_KIND[str(group)]
        block = schema.kind_channels(level, kind)  # type: ignore[arg-type]
        arr = np.full(block.stop - block.start, np.nan)
        arr[sub["channel"].to_numpy() - block.start] = sub["mean"].to_numpy()
        out.setdefault(str(group), {})[str(level)] = arr
    return out
