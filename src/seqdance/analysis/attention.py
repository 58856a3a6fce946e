"""Per-protein, per-head agreement between attention maps and stored pair properties (docs/design.md#attention-metrics).

Tokens are ``<cls> residues <eos>`` truncated to 1,024 (T = token count). A head's map ``a`` (T×T) holds the
softmax probabilities, row i attending to column j. Pairs are *ordered* token pairs (i, j) of residue tokens
with |i − j| > 2 whose targets are valid. Two pair properties, from the stored targets
(docs/design.md#property-schema, #targets):

* co-movement f = pair channel ``corr`` (valid at every residue–residue pair; −1 there is a real value);
* interaction f = Σ over the nine interaction channels of (stored value)³ — the store holds cube roots — valid
  where all nine are stored (none masked).

The notebook's metrics, per head:

* ``comove_topl_ratio`` / ``interact_topl_ratio``: order the pairs by attention (descending; ties in token
  order, i.e. a stable sort), take the top T; mean |f| over them / (mean |f| over all other pairs + 1e-8);
* ``comove_pos_spearman`` / ``comove_neg_spearman``: Spearman of attention vs co-movement over pairs with
  f > 0 / f < 0;
* ``interact_auroc``: positives f ≥ 0.01, negatives f = 0 (0 < f < 0.01 left out), score = attention.

These follow the notebook's definitions with attention and targets aligned pair by pair. The notebook's code
computes the interaction top-L ratio differently (docs/design.md#attention-notebook-as-written): it reassigns the
pair mask to the AUROC pairs (f = 0 or f ≥ 0.01) before taking attention, but takes |f| from all valid pairs, so
the k-th attention value is paired with the k-th valid pair's f — a different pair whenever a pair with
0 < f < 0.01 comes before it. ``interact_topl_ratio_as_written`` reproduces that value exactly (so the paper's
figure can be rebuilt): the top min(T, n_auroc) positions of the attention over the AUROC pairs (stable order),
mean |f| at those positions of the valid-pair list / (mean |f| over the list's other positions + 1e-8), with f
the sum of the nine stored channels cubed as the notebook writes it (partly masked channels included) and valid
meaning f ≠ −9.

The paper's variant: attention symmetrised ((a + aᵀ)/2), |i − j| > 5, Spearman with the pair property:
``sym_comove_pos_spearman`` / ``sym_comove_neg_spearman`` (co-movement > 0 / < 0) and ``sym_interact_spearman``
(all valid interaction pairs). Ordered pairs are used here too; for a symmetric target this equals the upper
triangle exactly (each value appears twice, which leaves Spearman's r unchanged), and for the asymmetric
reference-mode interaction frequencies it uses both directions.

Spearman = Pearson of average ranks (scipy's convention); AUROC = Mann–Whitney U / (n₊ n₋) with ties counted
half (equal to scikit-learn's ``roc_auc_score``). Undefined values (fewer than two pairs, a constant input, no
positive or no negative pair, no pair outside the top T) are NaN. The maps stay in their own precision
(float32); every reduction (sums, ranks, correlations, the symmetrised maps) is float64, so the metrics equal a
float64 implementation on the same maps to round-off (tested to 1e-9 on the command's written output).

Speed: the pairs, their targets and the target ranks are selected once per protein
(:class:`AttentionMetricPlan`); then each layer's heads are scored together in torch, on the device the maps
are on: one sort of the raw attention over the |i − j| > 2 pairs and one of the symmetrised attention over the
|i − j| > 5 pairs per head, from which every subset's average ranks follow by cumulative counts
(:class:`_RankedPairs`). Written by hand because scipy/scikit-learn score one vector at a time on the CPU; the
tests compare with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from seqdance import schema, tokenizer
from seqdance.errors import InputError

#: The notebook truncates every protein to this many tokens (<cls> + residues (+ <eos>)): ESM2's context.
MAX_TOKENS = schema.ESM2_MAX_TOKENS
#: Pairs with |i − j| greater than this enter the notebook's metrics ...
NOTEBOOK_MIN_SEPARATION = 2
#: ... and greater than this the paper's (docs/design.md#attention-paper, #attention-metrics).
PAPER_MIN_SEPARATION = 5
#: Added to the denominator of the top-L ratio.
TOPL_EPSILON = 1e-8
#: Interaction sums at or above this are AUROC positives; exactly 0 are negatives.
AUROC_POSITIVE_MIN = 0.01
#: Fewest tokens an analysis may keep per protein: <cls> and 8 residues, the shortest window holding two residue
#: pairs with |i − j| > 5, the least a Spearman correlation of the paper's metrics needs (fewer give only NaN).
MIN_TOKENS = PAPER_MIN_SEPARATION + 4
#: The notebook's "masked" interaction sum: nine channels at the mask value −1, cubed and summed.
_NOTEBOOK_MASKED_SUM = -9.0

#: Metric columns, in table order, and what each measures.
METRICS: dict[str, str] = {
    "comove_topl_ratio": "mean |corr| of the top-T attended pairs / mean |corr| of the others (notebook)",
    "comove_pos_spearman": "Spearman(attention, corr) over pairs with corr > 0 (notebook)",
    "comove_neg_spearman": "Spearman(attention, corr) over pairs with corr < 0 (notebook)",
    "interact_topl_ratio": "mean interaction of the top-T attended pairs / mean of the others (notebook's "
                           "definition, attention and targets aligned)",
    "interact_auroc": "AUROC of attention for interacting (>= 0.01) vs non-interacting (= 0) pairs (notebook)",
    "sym_comove_pos_spearman": "Spearman((a+aT)/2, corr) over |i-j| > 5, corr > 0 (paper)",
    "sym_comove_neg_spearman": "Spearman((a+aT)/2, corr) over |i-j| > 5, corr < 0 (paper)",
    "sym_interact_spearman": "Spearman((a+aT)/2, interaction) over |i-j| > 5 (paper)",
    "interact_topl_ratio_as_written": "the interaction top-T ratio as the notebook's code computes it: attention "
                                      "ranked over the AUROC pairs, |f| taken from all valid pairs by position "
                                      "(misaligned where 0 < f < 0.01; to rebuild the paper's figure)",
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
#: Which end of a metric is "better" when picking the best head: attention that grows as the movement gets
#: more anti-correlated gives a negative Spearman over corr < 0, so those metrics are best at their minimum.
METRIC_BEST: dict[str, str] = {
    name: ("min" if name.endswith("neg_spearman") else "max") for name in METRIC_NAMES
}

_CORR = schema.PROPERTY_BY_NAME["corr"]
_INTERACTIONS = tuple(schema.PROPERTY_BY_NAME[n] for n in schema.INTERACTION_NAMES)


@dataclass(frozen=True)
class AttentionTargets:
    """The two pair properties of one protein on its (truncated) tokens; NaN where a pair is not a target."""

    n_tokens: int
    comovement: np.ndarray  # (T, T) float64
    interaction: np.ndarray  # (T, T) float64
    #: (T, T) float64: Σ of the nine stored channels cubed at every token pair, masked values (−1) included, as the
    #: notebook's code sums them (−9 where all nine are masked); for ``interact_topl_ratio_as_written``
    interaction_as_written: np.ndarray | None = None


def attention_targets(
    pair_target: np.ndarray, sequence: str, *, max_tokens: int = MAX_TOKENS, name: str = "protein"
) -> AttentionTargets:
    """Co-movement and interaction maps from a protein's stored MD pair targets (T, T, 10), first ``max_tokens``.

    ``sequence``: the stored sequence (chains joined by ':'); its token layout says which rows are residues.
    """
    pair = np.asarray(pair_target)
    n_tokens, residue_index = _token_layout(sequence, name)
    md_width = schema.stored_width("pair", "md")
    if pair.ndim != 3 or pair.shape[0] != pair.shape[1] or pair.shape[2] != md_width:
        raise InputError(
            f"{name}: attention analysis needs MD pair targets (T, T, {md_width}) with co-movement and "
            f"interactions; got shape {pair.shape}"
        )
    if pair.shape[0] != n_tokens:
        raise InputError(f"{name}: pair targets have {pair.shape[0]} tokens, the sequence has {n_tokens}")
    t = min(n_tokens, int(max_tokens))
    pair = pair[:t, :t].astype(np.float64)
    if not np.isfinite(pair).all():
        i, j, c = (int(v[0]) for v in np.nonzero(~np.isfinite(pair)))
        raise InputError(f"{name}: non-finite pair target at tokens ({i}, {j}), channel {c}")
    residue = np.zeros(t, dtype=bool)
    residue[residue_index[residue_index < t]] = True
    both = residue[:, None] & residue[None, :]
    comove = np.where(both, pair[..., _CORR.store_channels.start], np.nan)
    inter_channels = pair[..., [p.store_channels.start for p in _INTERACTIONS]]
    inter_valid = both & (inter_channels != schema.MASK_VALUE).all(axis=-1)
    as_written = (inter_channels**3).sum(axis=-1)
    interaction = np.where(inter_valid, as_written, np.nan)
    return AttentionTargets(t, comove, interaction, as_written)


def _token_layout(sequence: str, name: str) -> tuple[int, np.ndarray]:
    enc = tokenizer.encode(sequence, name)
    return int(enc.ids.shape[0]), enc.residue_index


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along the last axis."""
    return rankdata(values, method="average", axis=-1)


def _centred_ranks(values: np.ndarray) -> tuple[np.ndarray, float]:
    """A target's average ranks, centred, and their norm (computed once per protein)."""
    if values.size == 0:
        return values.astype(np.float64), 0.0
    ranks = average_ranks(values)
    centred = ranks - ranks.mean()
    return centred, float(np.sqrt(centred @ centred))


@dataclass(frozen=True)
class _Subset:
    """A subset of a pair set: a 0/1 mask over the set and the target's centred ranks spread over it (0 outside)."""

    mask: torch.Tensor  # (n,) int32
    target: torch.Tensor  # (n,) float64: centred average ranks of the target among the members, 0 elsewhere
    norm: float  # norm of the centred target ranks
    size: int

    @classmethod
    def of(cls, mask: np.ndarray, values: np.ndarray | None = None) -> _Subset:
        target = np.zeros(mask.shape[0])
        norm = 0.0
        if values is not None:
            target[mask], norm = _centred_ranks(values[mask])
        return cls(torch.from_numpy(mask.astype(np.int32)), torch.from_numpy(target), norm, int(mask.sum()))

    def to(self, device: torch.device) -> _Subset:
        return _Subset(self.mask.to(device), self.target.to(device), self.norm, self.size)


class _RankedPairs:
    """One sort of each head's scores over a pair set, reused for the average ranks within any subset of it.

    With the ascending order of all n scores and a subset mask, c(k) = number of subset members among the
    first k+1 sorted scores (a cumulative sum); a member in a run of equal scores spanning sorted positions
    a..b has the average rank c(a−1) + (c(b) − c(a−1) + 1)/2 within the subset. Spearman's r and the AUROC are
    then sums over the sorted positions (the members' mean rank is (m + 1)/2), so per subset only the mask and
    the target ranks are gathered in sorted order; the tie correction touches only the positions inside runs
    of equal scores (float32 attention over ~10⁶ pairs has exact ties, but they are a small fraction).
    """

    def __init__(self, scores: torch.Tensor) -> None:
        h, n = scores.shape
        self.scores = scores  # (H, n)
        self.order = torch.argsort(scores, dim=-1)  # ascending; the order inside a tie run is irrelevant
        self.ordered = torch.gather(scores, -1, self.order)
        tied = self.ordered[:, 1:] == self.ordered[:, :-1]  # sorted position k+1 equals position k
        same_as_previous = torch.zeros((h, n), dtype=torch.bool, device=scores.device)
        same_as_previous[:, 1:] = tied
        same_as_next = torch.zeros_like(same_as_previous)
        same_as_next[:, :-1] = tied
        # flat sorted positions inside runs of equal scores (row-major, so each run is contiguous), the flat
        # position of each run's last member and of the position before its first member
        flat = torch.nonzero((same_as_previous | same_as_next).view(-1)).squeeze(1)
        starts = ~same_as_previous.view(-1)[flat]
        ends = ~same_as_next.view(-1)[flat]
        run = torch.cumsum(starts, dim=0) - 1
        first, last = flat[starts][run], flat[ends][run]
        self.tie_flat = flat
        self.tie_last = last
        self.tie_before = (first - 1).clamp_min(0)
        self.tie_has_before = (first % n) > 0

    def _sorted(self, values: torch.Tensor) -> torch.Tensor:
        """A per-pair vector (n,) laid out in each head's sorted order, (H, n)."""
        h, n = self.order.shape
        return torch.gather(values.expand(h, n), -1, self.order)

    def _member_ranks(self, subset: _Subset) -> tuple[torch.Tensor, torch.Tensor]:
        """(members in sorted order (H, n) int32, average rank within the subset at each sorted position)."""
        member = self._sorted(subset.mask)
        count = torch.cumsum(member, dim=-1, dtype=torch.int64)  # members among the first k+1 sorted scores
        rank = count.to(torch.float64)
        if self.tie_flat.numel():  # c(a − 1) + (c(b) − c(a − 1) + 1) / 2 inside each run a..b of equal scores
            flat_count = count.view(-1)
            before = torch.where(self.tie_has_before, flat_count[self.tie_before], 0).to(torch.float64)
            through = flat_count[self.tie_last].to(torch.float64)
            rank.view(-1).index_copy_(0, self.tie_flat, before + (through - before + 1) / 2)
        return member, rank

    def spearman(self, subset: _Subset) -> torch.Tensor:
        """(H,) Spearman r between the scores and the target over the subset; NaN when undefined."""
        h = self.order.shape[0]
        if subset.size < 2 or not subset.norm > 0:
            return torch.full((h,), float("nan"), dtype=torch.float64, device=self.order.device)
        member, rank = self._member_ranks(subset)
        centred = (rank - (subset.size + 1) / 2) * member  # members' mean rank is (m + 1) / 2; others 0
        norm = torch.linalg.vector_norm(centred, dim=-1)
        r = (centred * self._sorted(subset.target)).sum(dim=-1) / (norm * subset.norm)
        return torch.where(norm > 0, r, torch.full_like(r, float("nan")))

    def auroc(self, subset: _Subset, positive: torch.Tensor) -> torch.Tensor:
        """(H,) AUROC over the subset for 0/1 labels ``positive`` (n,), Mann–Whitney U / (n₊ n₋); NaN if one class."""
        h = self.order.shape[0]
        n_pos = int(positive.sum())
        n_neg = subset.size - n_pos
        if n_pos == 0 or n_neg == 0:
            return torch.full((h,), float("nan"), dtype=torch.float64, device=self.order.device)
        _, rank = self._member_ranks(subset)
        rank_sum = (rank * self._sorted(positive)).sum(dim=-1)
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _top_positions(scores: torch.Tensor, top: int, kth: torch.Tensor | None = None) -> torch.Tensor:
    """(H, n) 0/1 float64: the ``top`` highest scores of each row, ties broken by position (a stable descending
    sort), found from the ``top``-th largest value (``kth``, (H,), when already known) without sorting."""
    n = scores.shape[1]
    if kth is None:
        kth = torch.kthvalue(scores, n - top + 1, dim=-1).values
    kth = kth[:, None]
    above = scores > kth
    equal = scores == kth
    room = top - above.sum(dim=-1, keepdim=True)
    return (above | (equal & (torch.cumsum(equal, dim=-1) <= room))).to(torch.float64)


def _top_ratio(scores: torch.Tensor, magnitude: torch.Tensor, top: int, *, total: int | None = None,
               kth: torch.Tensor | None = None) -> torch.Tensor:
    """Top-L ratio per row of ``scores`` (H, n): mean ``magnitude`` at the ``top`` highest scores (stable order)
    over (mean at the others + 1e-8), in float64. ``magnitude`` is aligned with the scores (n,), or longer
    (``total`` entries, the notebook's code: the scores' positions index it and the others are all the rest)."""
    n = scores.shape[1]
    total = n if total is None else total
    chosen = _top_positions(scores, top, kth)
    top_sum = chosen @ magnitude[:n]
    rest_mean = (magnitude.sum() - top_sum) / (total - top)
    return (top_sum / top) / (rest_mean + TOPL_EPSILON)


class AttentionMetricPlan:
    """The pairs, targets and target ranks of one protein, selected once; :meth:`evaluate` scores heads.

    Per layer, each head's attention is sorted twice — over the |i − j| > 2 pairs (raw maps) and over the
    |i − j| > 5 pairs (symmetrised maps, float64) — and every metric's ranks come from those two sorts. The
    work runs in torch on the maps' device (a GPU when the model runs there), ``head_chunk`` heads at a time.
    """

    def __init__(self, targets: AttentionTargets, *, head_chunk: int = 8) -> None:
        t = targets.n_tokens
        self.n_tokens = t
        self.head_chunk = max(1, int(head_chunk))
        idx = np.arange(t)
        separation = np.abs(idx[:, None] - idx[None, :]).ravel()
        transpose = (idx[None, :] * t + idx[:, None]).ravel()  # flat index of (j, i) at (i, j)
        comove = targets.comovement.ravel()
        inter = targets.interaction.ravel()
        residue_pair = np.isfinite(comove)  # every residue-residue pair; interactions are a subset

        # |i - j| > 2: every notebook metric's pairs are a subset of these
        near = np.flatnonzero(residue_pair & (separation > NOTEBOOK_MIN_SEPARATION))
        c, f = comove[near], inter[near]
        f_ok = np.isfinite(f)
        auroc_pairs = f_ok & ((f >= AUROC_POSITIVE_MIN) | (f == 0))
        arrays = {"near": near, "comove_magnitude": np.abs(c), "near_interact": np.flatnonzero(f_ok),
                  "interact_magnitude": np.abs(f[f_ok]),
                  "auroc_positive": (auroc_pairs & (f >= AUROC_POSITIVE_MIN)).astype(np.int32)}

        # the notebook's code: every token pair with |i - j| > 2 (row-major, as np.where gives them); |f| of the
        # valid ones (f != -9) in that order; attention ranked over the AUROC pairs (f == 0 or f >= 0.01)
        every = np.flatnonzero(separation > NOTEBOOK_MIN_SEPARATION)
        if targets.interaction_as_written is None:  # targets built without it: the column stays NaN
            every = every[:0]
        w = np.zeros(0) if targets.interaction_as_written is None else targets.interaction_as_written.ravel()[every]
        arrays.update(written_auroc=every[(w == 0) | (w >= AUROC_POSITIVE_MIN)],
                      written_magnitude=np.abs(w[w != _NOTEBOOK_MASKED_SUM]))
        subsets = {"near_pos": _Subset.of(c > 0, c), "near_neg": _Subset.of(c < 0, c),
                   "auroc": _Subset.of(auroc_pairs)}

        # |i - j| > 5 on the symmetrised maps (the paper's variant)
        far = np.flatnonzero(residue_pair & (separation > PAPER_MIN_SEPARATION))
        c, f = comove[far], inter[far]
        arrays.update(far=far, far_transpose=transpose[far])
        subsets.update(far_pos=_Subset.of(c > 0, c), far_neg=_Subset.of(c < 0, c),
                       far_interact=_Subset.of(np.isfinite(f), f))
        self._arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        self._subsets = subsets
        self._on: dict[torch.device, tuple[dict[str, torch.Tensor], dict[str, _Subset]]] = {}

    @property
    def n_near_pairs(self) -> int:
        return int(self._arrays["near"].numel())

    def _tensors(self, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, _Subset]]:
        if device not in self._on:
            self._on[device] = ({k: v.to(device) for k, v in self._arrays.items()},
                                {k: v.to(device) for k, v in self._subsets.items()})
        return self._on[device]

    def evaluate(self, maps: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """Every metric for each head of ``maps`` (H, T', T') with T' ≥ T (only the first T tokens are used)."""
        tensor = maps.detach() if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
        if tensor.dim() != 3 or tensor.shape[1] != tensor.shape[2] or tensor.shape[1] < self.n_tokens:
            raise InputError(f"attention maps must be (heads, T, T) with T >= {self.n_tokens}, "
                             f"got {tuple(tensor.shape)}")
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        parts = [self._evaluate_chunk(tensor[h:h + self.head_chunk])
                 for h in range(0, tensor.shape[0], self.head_chunk)]
        return {name: torch.cat([p[name] for p in parts]).cpu().numpy() for name in METRIC_NAMES}

    @torch.no_grad()
    def _evaluate_chunk(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.n_tokens
        a, sub = self._tensors(maps.device)
        flat = maps[:, :t, :t].reshape(maps.shape[0], t * t)
        nan = torch.full((flat.shape[0],), float("nan"), dtype=torch.float64, device=maps.device)
        out: dict[str, torch.Tensor] = dict.fromkeys(METRIC_NAMES, nan)
        if a["near"].numel():
            near = _RankedPairs(flat.index_select(1, a["near"]))  # raw attention: exact in its own precision
            n = a["near"].numel()
            if n > t:
                out["comove_topl_ratio"] = _top_ratio(near.scores, a["comove_magnitude"], t,
                                                      kth=near.ordered[:, n - t])
            out["comove_pos_spearman"] = near.spearman(sub["near_pos"])
            out["comove_neg_spearman"] = near.spearman(sub["near_neg"])
            interact = near.scores.index_select(1, a["near_interact"])
            if interact.shape[1] > t:
                out["interact_topl_ratio"] = _top_ratio(interact, a["interact_magnitude"], t)
            out["interact_auroc"] = near.auroc(sub["auroc"], a["auroc_positive"])
        written = a["written_auroc"].numel()
        top = min(t, written)
        if top > 0 and a["written_magnitude"].numel() > top:
            scores = flat.index_select(1, a["written_auroc"])
            out["interact_topl_ratio_as_written"] = _top_ratio(scores, a["written_magnitude"], top,
                                                               total=a["written_magnitude"].numel())
        if a["far"].numel():
            sym = (flat.index_select(1, a["far"]).to(torch.float64)
                   + flat.index_select(1, a["far_transpose"]).to(torch.float64)) / 2
            far = _RankedPairs(sym)
            out["sym_comove_pos_spearman"] = far.spearman(sub["far_pos"])
            out["sym_comove_neg_spearman"] = far.spearman(sub["far_neg"])
            out["sym_interact_spearman"] = far.spearman(sub["far_interact"])
        return out


# --- summaries -------------------------------------------------------------------------------------------

ALL_GROUPS = "all"


def summarise_heads(per_head: pd.DataFrame, *, by: str = "group") -> pd.DataFrame:
    """Median over proteins of every metric per (``by`` value, layer, head), with ``all`` for every protein.

    ``per_head``: one row per protein × head with columns ``layer``, ``head``, ``by`` and the metrics.
    Columns: group, layer, head, n_proteins, then the median of each metric present.
    """
    metrics = [m for m in METRIC_NAMES if m in per_head.columns]
    parts = []
    for group, frame in [(ALL_GROUPS, per_head), *sorted(per_head.groupby(by), key=lambda kv: str(kv[0]))]:
        medians = frame.groupby(["layer", "head"], sort=True)[metrics].median()
        medians.insert(0, "n_proteins", frame.groupby(["layer", "head"], sort=True)["protein"].nunique())
        medians.insert(0, "group", str(group))
        parts.append(medians.reset_index())
    out = pd.concat(parts, ignore_index=True)
    return out[["group", "layer", "head", "n_proteins", *metrics]]


def best_heads(summary: pd.DataFrame) -> pd.DataFrame:
    """Per group and metric, the head whose median is best (:data:`METRIC_BEST`): group, metric, layer, head, median."""
    rows = []
    metrics = [m for m in METRIC_NAMES if m in summary.columns]
    for group, frame in summary.groupby("group", sort=False):
        for metric in metrics:
            values = frame[metric]
            if values.notna().sum() == 0:
                rows.append({"group": group, "metric": metric, "layer": None, "head": None, "median": np.nan})
                continue
            pick = values.idxmax() if METRIC_BEST[metric] == "max" else values.idxmin()
            rows.append({"group": group, "metric": metric, "layer": int(frame.at[pick, "layer"]),
                         "head": int(frame.at[pick, "head"]), "median": float(values[pick])})
    return pd.DataFrame(rows, columns=["group", "metric", "layer", "head", "median"])


def metric_grid(summary: pd.DataFrame, metric: str, group: str = ALL_GROUPS) -> np.ndarray:
    """(layers, heads) array of one metric's medians for one group (NaN where absent), for heat maps."""
    frame = summary[summary["group"] == group]
    if frame.empty:
        return np.zeros((0, 0))
    layers = int(frame["layer"].max()) + 1
    heads = int(frame["head"].max()) + 1
    grid = np.full((layers, heads), np.nan)
    grid[frame["layer"].to_numpy(int), frame["head"].to_numpy(int)] = frame[metric].to_numpy(float)
    return grid


def rows_for_protein(
    protein: str, source: str, group: str, layer_metrics: Mapping[int, Mapping[str, np.ndarray]]
) -> list[dict[str, object]]:
    """per_head rows (protein, source, group, layer, head, metrics...) from {layer: {metric: (H,)}}."""
    rows: list[dict[str, object]] = []
    for layer in sorted(layer_metrics):
        values = layer_metrics[layer]
        n_heads = len(next(iter(values.values())))
        for head in range(n_heads):
            row: dict[str, object] = {"protein": protein, "source": source, "group": group, "layer": layer,
                                      "head": head}
            row.update({m: float(values[m][head]) for m in METRIC_NAMES})
            rows.append(row)
    return rows
