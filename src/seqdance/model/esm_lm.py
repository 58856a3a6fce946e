"""ESM2 masked language model (encoder + ``lm_head``), for the ESM2 mutation-scoring baselines.

Parameter names follow transformers' ``EsmForMaskedLM`` (``esm.*`` without pooler, ``lm_head.dense``,
``lm_head.layer_norm``, ``lm_head.bias``); the decoder is tied to the word embeddings, as in ESM2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from seqdance.model import files
from seqdance.model.config import EncoderConfig, resolve_encoder_config
from seqdance.model.encoder import Esm2Encoder, gelu
from seqdance.model.kinds import DEFAULT_ESM2_SOURCE

if TYPE_CHECKING:
    from typing_extensions import Self


class EsmLMHead(nn.Module):
    """dense → GELU → LayerNorm → (word embeddings)ᵀ + bias."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(gelu(self.dense(hidden)))
        return F.linear(x, decoder_weight) + self.bias


class EsmMaskedLM(nn.Module):
    """ESM2 with its language-model head: ``forward(input_ids, attention_mask=None) -> logits (B, T, vocab)``."""

    def __init__(self, config: str | Mapping[str, Any] | EncoderConfig = "35M") -> None:
        super().__init__()
        self.esm = Esm2Encoder(resolve_encoder_config(config), add_pooling_layer=False)
        self.lm_head = EsmLMHead(self.esm.config)

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.esm.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden, _ = self.esm(input_ids, attention_mask)
        return self.lm_head(hidden, self.esm.embeddings.word_embeddings.weight)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write the ``facebook/esm2_*`` layout: HF ``config.json`` + ``model.safetensors`` (``esm.*`` and
        ``lm_head.*``; the decoder is tied to the word embeddings, so not written)."""
        config = self.encoder_config
        state = files.cpu_state(self)
        state.update(files.legacy_encoder_tensors("esm.", config, self.esm.embeddings.word_embeddings.weight.dtype))
        files.write_checkpoint(Path(directory), config.to_hf_dict(), state)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        revision: str | None = None,
    ) -> Self:
        """ESM2 with its language-model head from a ``facebook/esm2_*`` repo id (or a preset name such as "650M")
        or a local directory in that layout (HF ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)."""
        description, config, state = files.read_esm2_checkpoint(source, revision)
        model = files.build_without_init(lambda: cls(config))
        decoder = state.pop("lm_head.decoder.weight", None)
        if decoder is not None:
            embeddings = state.get("esm.embeddings.word_embeddings.weight")
            if embeddings is None or decoder.shape != embeddings.shape or not torch.equal(decoder, embeddings):
                raise files.CheckpointError(
                    f"{description}: lm_head.decoder.weight is not tied to the word embeddings, as ESM2's must be"
                )
        files.load_into(
            model, state, source=description, encoder_prefix="esm.", config=config,
            ignore=re.compile(r"^esm\.pooler\."),
        )
        return files.place(model, device, dtype)
