"""The baselines every fine-tuning run reports in the same table, fitted on the same folds.

* ``ridge:ohe`` (mutant tasks): ProteinGym's one-hot-encoding baseline, ridge regression on the one-hot mutated
  sequence (L × 20);
* ``ridge:embeddings``: each base model's frozen embeddings (mean over residues; per residue for residue tasks),
  optionally with its dynamics features, then ridge (the probe's fitting, :func:`seqdance.analysis.probe.fit_predict`:
  standardised features, penalty by leave-one-out cross-validation);
* ``ridge:length`` and ``ridge:composition``: sequence length, amino-acid composition (the probe's baselines; for
  residue tasks the protein's composition and the residue's own amino acid).

Ridge fits on every row outside the test fold (it needs no early-stopping rows). Classification uses the ridge
classifier (balanced class weights) and turns its decision values into class probabilities by a softmax.
"""

from __future__ import annotations

import numpy as np

from seqdance.tokenizer import AMINO_ACIDS


def one_hot(sequences: list[str]) -> np.ndarray:
    """(n, L × 20) one-hot encoding of equal-length sequences (other letters: all zeros)."""
    lookup = {a: k for k, a in enumerate(AMINO_ACIDS)}
    width = max(len(s) for s in sequences)
    out = np.zeros((len(sequences), width, len(AMINO_ACIDS)), dtype=np.float32)
    for i, seq in enumerate(sequences):
        for j, a in enumerate(seq):
            k = lookup.get(a)
            if k is not None:
                out[i, j, k] = 1.0
    return out.reshape(len(sequences), -1)


def residue_identity(sequence: str) -> np.ndarray:
    """(L, 20) one-hot of each residue's amino acid."""
    return one_hot(list(sequence.replace(":", ""))).reshape(-1, len(AMINO_ACIDS))


def fit_ridge(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
              n_classes: int | None, *, standardise: bool = True) -> np.ndarray:
    """Predictions for the ``test`` rows of a ridge fitted on the ``train`` rows: values, or (n, classes)
    probabilities. ``standardise=False`` fits the raw features (the one-hot baseline, as ProteinGym's)."""
    x = np.asarray(features, dtype=np.float64)
    if n_classes is None and not standardise:
        from sklearn.linear_model import RidgeCV

        from seqdance.analysis.probe import RIDGE_ALPHAS

        return RidgeCV(alphas=RIDGE_ALPHAS).fit(x[train], np.asarray(y, dtype=np.float64)[train]).predict(x[test])
    if n_classes is None:
        from seqdance.analysis.probe import fit_predict

        rows = train | test
        predicted, _ = fit_predict(x[rows], np.asarray(y, dtype=np.float64)[rows], train[rows], estimator="ridge")
        return predicted
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    from seqdance.analysis.probe import RIDGE_ALPHAS

    scaler = StandardScaler().fit(x[train])
    classifier = RidgeClassifierCV(alphas=RIDGE_ALPHAS, class_weight="balanced").fit(scaler.transform(x[train]),
                                                                                      y[train])
    decision = classifier.decision_function(scaler.transform(x[test]))
    scores = np.full((int(test.sum()), n_classes), -1e9)
    if decision.ndim == 1:  # two classes present: decision for classes_[1]
        decision = np.stack([-decision / 2, decision / 2], axis=1)
    scores[:, classifier.classes_] = decision
    scores -= scores.max(1, keepdims=True)
    proba = np.exp(scores)
    return proba / proba.sum(1, keepdims=True)
