"""The independent float64 reference of the attention metrics (docs/design.md#attention-metrics): pairs
selected from the raw stored arrays with plain loops, each head scored with scipy's ``spearmanr`` and
scikit-learn's ``roc_auc_score``, and the notebook's interaction top-L ratio transcribed line for line."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from seqdance import tokenizer


def reference_pairs(pair: np.ndarray, sequence: str, t: int):
    """(i, j) lists and targets, selected by explicit loops over the raw stored array."""
    ids = tokenizer.encode(sequence).ids[:t]
    residue = [int(x) not in tokenizer.SPECIAL_IDS for x in ids]
    out = {key: [] for key in ("comove", "interact")}
    for i in range(t):
        for j in range(t):
            if not (residue[i] and residue[j]) or i == j:
                continue
            out["comove"].append((i, j, float(pair[i, j, 9])))
            channels = pair[i, j, :9].astype(np.float64)
            if (channels != -1).all():
                out["interact"].append((i, j, float((channels**3).sum())))
    return {k: np.array(v, dtype=np.float64).reshape(-1, 3) for k, v in out.items()}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def _topl(att: np.ndarray, f: np.ndarray, t: int) -> float:
    if len(att) <= t:
        return np.nan
    order = np.argsort(-att, kind="stable")
    top, rest = np.abs(f[order[:t]]), np.abs(f[order[t:]])
    return top.mean() / (rest.mean() + 1e-8)


def reference_metrics(a: np.ndarray, pairs: dict, t: int, pair: np.ndarray) -> dict[str, float]:
    """All metrics for one head's map ``a`` (T, T), float64 (``pair``: the stored pair targets)."""
    sym = (a + a.T) / 2
    c, it = pairs["comove"], pairs["interact"]
    ci, cj, cf = c[:, 0].astype(int), c[:, 1].astype(int), c[:, 2]
    ii, ij, inf = it[:, 0].astype(int), it[:, 1].astype(int), it[:, 2]
    near_c, near_i = np.abs(ci - cj) > 2, np.abs(ii - ij) > 2
    far_c, far_i = np.abs(ci - cj) > 5, np.abs(ii - ij) > 5
    out = {
        "comove_topl_ratio": _topl(a[ci, cj][near_c], cf[near_c], t),
        "comove_pos_spearman": _spearman(a[ci, cj][near_c & (cf > 0)], cf[near_c & (cf > 0)]),
        "comove_neg_spearman": _spearman(a[ci, cj][near_c & (cf < 0)], cf[near_c & (cf < 0)]),
        "interact_topl_ratio": _topl(a[ii, ij][near_i], inf[near_i], t),
        "sym_comove_pos_spearman": _spearman(sym[ci, cj][far_c & (cf > 0)], cf[far_c & (cf > 0)]),
        "sym_comove_neg_spearman": _spearman(sym[ci, cj][far_c & (cf < 0)], cf[far_c & (cf < 0)]),
        "sym_interact_spearman": _spearman(sym[ii, ij][far_i], inf[far_i]),
    }
    labelled = near_i & ((inf >= 0.01) | (inf == 0))
    labels = inf[labelled] >= 0.01
    scores = a[ii, ij][labelled]
    out["interact_auroc"] = float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else np.nan
    out["interact_topl_ratio_as_written"] = notebook_topl_as_written(a, pair, t)
    return out


def notebook_topl_as_written(a: np.ndarray, pair: np.ndarray, length: int) -> float:
    """The interaction top-L ratio of the released notebook's code, line for line (its variable names), for one
    head's map ``a`` (T, T); the one change: a stable sort, so that tied attention has one defined order."""
    row_indices, col_indices = np.where(np.abs(np.arange(length)[:, None] - np.arange(length)) > 2)
    inter = (pair[:length, :length, :9].astype(np.float64) ** 3).sum(-1)
    f = inter[row_indices, col_indices]
    mask = f != -9
    f_flat = f[mask]
    mask_auroc = mask = (f == 0) | (f >= 0.01)  # noqa: F841 (the notebook reassigns mask here)
    att = a[row_indices, col_indices]
    att_flat = att[mask]
    top_l_indices = np.argsort(-att_flat, kind="stable")[:length]
    other_indices = np.setdiff1d(np.arange(f_flat.shape[0]), top_l_indices)
    if len(top_l_indices) == 0 or len(other_indices) == 0:
        return np.nan
    top_l_mean = np.mean(np.abs(f_flat[top_l_indices]))
    other_mean = np.mean(np.abs(f_flat[other_indices]))
    return float(top_l_mean / (other_mean + 1e-8))


def maps_of(model, sequence: str, t: int) -> np.ndarray:
    """(layers*heads, T, T) float64 maps through each model's public attention output."""
    ids = torch.as_tensor(tokenizer.encode(sequence).ids[:t])[None]
    with torch.no_grad():
        if hasattr(model, "esm2"):
            maps = model(ids, pairs=False, return_attentions=True).attentions[0].permute(2, 0, 1)
        else:
            maps = model.esm(ids, need_attentions=True)[1][0]
    return maps.double().numpy()
