"""Folds: which rows each model is tested on, trained on, and early-stopped on.

Schemes (``split``):

* ``columns``: each ``split_*`` column of the table is one fold (``train``/``valid``/``test``); for mutant tasks the
  table's ``fold_*`` columns hold fold numbers;
* ``kfold``: ``folds`` seeded random folds (stratified by class for classification);
* ``identity``: ``folds`` folds of whole sequence-identity clusters (the dataset split code,
  :func:`seqdance.store.split.cluster_sequences`), so no test protein has a close homologue in training;
* ProteinGym's supervised schemes for mutant tasks, per assay: ``fold_random_5`` (random), ``fold_modulo_5``
  (mutated position modulo 5) and ``fold_contiguous_5`` (the mutated positions, sorted, cut into five contiguous
  blocks of equal numbers of positions, ±1). A table that has the column is used as given. Modulo and contiguous
  folds are defined for single substitutions (as in ProteinGym); multi-mutants get random folds (said in the notes).

Every fold keeps a seeded ``valid_fraction`` of its training rows apart for early stopping (whole clusters for
``identity``; a ``valid`` value of a ``split_*`` column is used as given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqdance.errors import InputError
from seqdance.finetuning.labels import LabelSet
from seqdance.finetuning.options import PROTEINGYM_SCHEMES

N_PROTEINGYM_FOLDS = 5


@dataclass(frozen=True)
class Fold:
    """One fold: boolean masks over the rows; training rows are neither test nor valid."""

    scheme: str
    name: str
    test: np.ndarray
    valid: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return ~(self.test | self.valid)


def _check(folds: list[Fold], labels: LabelSet) -> list[Fold]:
    for fold in folds:
        if not fold.test.any():
            raise InputError(f"{labels.source}: fold {fold.name} of split {fold.scheme} has no test rows")
        if fold.train.sum() < 2:
            raise InputError(f"{labels.source}: fold {fold.name} of split {fold.scheme} has fewer than two training "
                             "rows")
    return folds


def _valid_from(train: np.ndarray, fraction: float, rng: np.random.Generator,
                clusters: np.ndarray | None = None) -> np.ndarray:
    """A seeded ``fraction`` of the ``train`` rows (whole clusters when given); at least one row."""
    rows = np.flatnonzero(train)
    valid = np.zeros_like(train)
    if len(rows) < 3:
        return valid
    if clusters is None:
        take = max(1, round(fraction * len(rows)))
        valid[rng.choice(rows, size=take, replace=False)] = True
        return valid
    ids = np.unique(clusters[rows])
    order = rng.permutation(len(ids))
    target = max(1, round(fraction * len(rows)))
    for k in order:
        if valid.sum() >= target:
            break
        valid |= train & (clusters == ids[k])
    if valid.sum() >= train.sum() - 1:  # one cluster holds (almost) everything: fall back to rows
        return _valid_from(train, fraction, rng)
    return valid


def fold_ids_random(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced random fold numbers 0..k-1."""
    ids = np.arange(n) % k
    return ids[rng.permutation(n)]


def proteingym_fold_ids(scheme: str, positions: list[tuple[int, ...]], rng: np.random.Generator
                        ) -> tuple[np.ndarray, int]:
    """Fold numbers 0..4 of one assay's mutants under a ProteinGym scheme, and how many multi-mutants got random
    folds (modulo and contiguous are defined on the position of single substitutions)."""
    n = len(positions)
    ids = fold_ids_random(n, N_PROTEINGYM_FOLDS, rng)
    if scheme == "fold_random_5":
        return ids, 0
    single = np.array([len(p) == 1 for p in positions], dtype=bool)
    pos = np.array([p[0] if len(p) == 1 else -1 for p in positions], dtype=np.int64)
    if scheme == "fold_modulo_5":
        ids[single] = pos[single] % N_PROTEINGYM_FOLDS
    elif scheme == "fold_contiguous_5":
        distinct = np.unique(pos[single])
        block = np.empty(len(distinct), dtype=np.int64)
        for k, part in enumerate(np.array_split(np.arange(len(distinct)), N_PROTEINGYM_FOLDS)):
            block[part] = k
        ids[single] = block[np.searchsorted(distinct, pos[single])]
    else:
        raise InputError(f"unknown ProteinGym fold scheme {scheme!r}")
    return ids, int((~single).sum())


def _given_fold_ids(values: np.ndarray, source: str, column: str) -> np.ndarray:
    try:
        ids = np.array([int(float(v)) for v in values], dtype=np.int64)
    except ValueError:
        raise InputError(f"{source}: column {column!r} must hold fold numbers") from None
    return ids - ids.min() if ids.min() > 0 else ids


def mutant_folds(labels: LabelSet, scheme: str, *, seed: int, valid_fraction: float) -> tuple[list[Fold], list[str]]:
    """The five folds of a ProteinGym scheme over every assay of ``labels`` (fold k = each assay's fold k)."""
    assert labels.groups is not None and labels.positions is not None
    ids = np.zeros(labels.n, dtype=np.int64)
    notes = []
    for a, assay in enumerate(dict.fromkeys(labels.groups)):
        rows = np.flatnonzero(labels.groups == assay)
        if scheme in labels.split_columns:
            ids[rows] = _given_fold_ids(labels.split_columns[scheme][rows], labels.source, scheme)
            notes.append(f"{assay}: {scheme} as given in the table")
            continue
        rng = np.random.default_rng([seed, a, PROTEINGYM_SCHEMES.index(scheme)])
        assay_ids, n_multi = proteingym_fold_ids(scheme, [labels.positions[i] for i in rows], rng)
        ids[rows] = assay_ids
        if n_multi and scheme != "fold_random_5":
            notes.append(f"{assay}: {n_multi} multi-mutant(s) got random folds ({scheme} is defined for single "
                         "substitutions)")
    folds = []
    for k in range(int(ids.max()) + 1):
        test = ids == k
        rng = np.random.default_rng([seed, 1000 + k])
        valid = np.zeros(labels.n, dtype=bool)
        for assay in dict.fromkeys(labels.groups):  # early-stopping rows from every assay
            in_assay = labels.groups == assay
            valid |= _valid_from(~test & in_assay, valid_fraction, rng)
        folds.append(Fold(scheme, f"{scheme}:{k}", test, valid))
    return _check(folds, labels), notes


def _stratified_ids(y: np.ndarray, classes: list[str], names: list[str], k: int, rng: np.random.Generator,
                    source: str) -> np.ndarray:
    ids = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in range(len(classes)):
        members = np.flatnonzero(y == c)
        if len(members) == 1:
            raise InputError(f"{source}: class {classes[c]!r} has a single member ({names[members[0]]}); a split "
                             "needs at least two (one to train on, one to test)")
        order = rng.permutation(members)
        ids[order] = (np.arange(len(order)) + offset) % k
        offset += len(order)
    return ids


def make_folds(labels: LabelSet, split: str, *, folds: int = 5, seed: int = 0, valid_fraction: float = 0.1,
               identity: float = 0.3, coverage: float = 0.5) -> tuple[list[Fold], list[str]]:
    """The folds of one scheme (see the module docstring) and notes for the report."""
    if split in PROTEINGYM_SCHEMES:
        if labels.task != "mutant":
            raise InputError(f"split {split} is for mutant tasks")
        return mutant_folds(labels, split, seed=seed, valid_fraction=valid_fraction)
    rng = np.random.default_rng([seed, 7])
    if split == "columns":
        if labels.task == "mutant":
            given = [c for c in labels.split_columns if c.startswith("fold_")]
            if not given:
                raise InputError(f"{labels.source}: split columns asked for but the table has no fold_* column")
            out, notes = [], []
            for column in given:
                part, note = mutant_folds(labels, column, seed=seed, valid_fraction=valid_fraction)
                out += part
                notes += note
            return out, notes
        columns = {k: v for k, v in labels.split_columns.items() if k.startswith("split_")}
        if not columns:
            raise InputError(f"{labels.source}: split columns asked for but the table has no split_* column")
        out = []
        for column, values in columns.items():
            test = values == "test"
            valid = values == "valid"
            if not valid.any():
                valid = _valid_from(values == "train", valid_fraction, rng)
            out.append(Fold("columns", column, test, valid))
        return _check(out, labels), []
    if split == "kfold":
        if labels.is_classification and labels.task == "protein":
            ids = _stratified_ids(np.asarray(labels.y), labels.classes or [], labels.names, folds, rng, labels.source)
        else:
            ids = fold_ids_random(labels.n, folds, rng)
        clusters = None
    elif split == "identity":
        from seqdance.store.split import cluster_sequences

        table = cluster_sequences(labels.names, labels.sequences, identity=identity, coverage=coverage)
        clusters = table["cluster"].to_numpy(dtype=object)
        distinct, sizes = np.unique(clusters, return_counts=True)
        if len(distinct) < folds:
            raise InputError(f"{labels.source}: {len(distinct)} sequence cluster(s) at {identity:.0%} identity, fewer "
                             f"than the {folds} folds; lower --folds or the identity threshold")
        load = np.zeros(folds)
        assign = {}
        for j in np.lexsort((rng.random(len(distinct)), -sizes)):  # largest clusters first, ties at random
            k = int(np.argmin(load))
            assign[distinct[j]] = k
            load[k] += sizes[j]
        ids = np.array([assign[c] for c in clusters], dtype=np.int64)
    else:
        raise InputError(f"unknown split {split!r}")
    out = []
    for k in range(folds):
        test = ids == k
        out.append(Fold(split, f"{split}:{k}", test, _valid_from(~test, valid_fraction, rng, clusters)))
    return _check(out, labels), []
