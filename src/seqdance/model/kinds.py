"""The two models (docs/design.md#overview, #model-architecture), defined once; light, so command-line choices read it
without torch.

``esmdance``: pretrained ESM2 encoder, frozen, heads trained. ``seqdance``: the same architecture, encoder
re-initialised and trained on dynamics. The name is what the released ``config.json`` records as
``model_select``.
"""

from __future__ import annotations

from typing import Literal

ModelSelect = Literal["esmdance", "seqdance"]
MODEL_SELECTS: tuple[str, ...] = ("esmdance", "seqdance")

#: Where loading looks when no model is named: the released ESMDance on the Hugging Face hub.
DEFAULT_MODEL_SOURCE = "ChaoHou/ESMDance"
#: The pretrained ESM2 that ESMDance was built on (and the default ESM2 baseline).
DEFAULT_ESM2_SOURCE = "facebook/esm2_t12_35M_UR50D"
