"""seqdance.inference: dynamic properties, embeddings and attention maps of sequences from a loaded model.

Tokenise, cut long sequences into windows, batch by length, run the model, hand back residue-aligned arrays
(:func:`predict`, :class:`Prediction`) and write them (NPZ/CSV per sequence, an HDF5 embedding store).
"""

from __future__ import annotations

from seqdance.inference.predict import iter_predictions, predict
from seqdance.inference.prediction import Prediction

__all__ = ["Prediction", "iter_predictions", "predict"]
