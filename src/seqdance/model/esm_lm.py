"""ESM2 masked language model (encoder + ``lm_head``), for the ESM2 mutation-scoring baselines.

Parameter names follow transformers' ``EsmForMaskedLM`` (``esm.*`` without pooler, ``lm_head.dense``,
``lm_head.layer_norm``, ``lm_head.bias``); the decoder is tied to the word embeddings, as in ESM2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqdance.model.config import EncoderConfig, resolve_encoder_config
from seqdance.model.encoder import Esm2Encoder, gelu


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
        """Write the ``facebook/esm2_*`` layout: HF ``config.json`` + ``model.safetensors``."""
        from seqdance.model.loading import save_esm2_masked_lm

        save_esm2_masked_lm(self, directory)
