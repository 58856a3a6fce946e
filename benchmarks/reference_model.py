"""The straightforward REFERENCE formulation of SeqDance / ESMDance (for tests and benchmarks; not in the package).

It is the reference module as published: a transformers ``EsmModel`` with eager attention returning every
layer's attention maps, the residue head, and the pair head that materialises the (B, T, T, 2d) concatenation
concat(q_j ⊙ k_i, q_j − k_i) and the concatenation of its GELU output with the stacked attention maps. Only the
output activations are assembled into schema-ordered tensors (residue (B,T,50), pair (B,T,T,13)) so they can be
compared with ``seqdance.model.DynamicsModel`` channel by channel.

Loads a state dict in the released layout (``esm2.*`` with transformers 4.48 names, per-layer rotary
``inv_freq``, the unused ``position_embeddings``), as the installed transformers (5.x) does: its ``EsmModel``
keeps one model-level ``inv_freq`` and remaps the per-layer keys in a load hook.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from transformers import EsmConfig, EsmModel

from seqdance.model.config import EncoderConfig
from seqdance.schema import (
    N_PAIR_CHANNELS,
    N_RESIDUE_CHANNELS,
    PAIR_PROPERTIES,
    RESIDUE_PROPERTIES,
    SOFTPLUS_BETA,
    SOFTPLUS_THRESHOLD,
)

#: Keys of released files that ``EsmModel`` (5.x) does not have and ignores.
IGNORED_KEYS = ("esm2.embeddings.position_embeddings.weight", "esm2.embeddings.position_ids")


def transformers_esm_config(config: EncoderConfig) -> EsmConfig:
    """An ``EsmConfig`` with this architecture and eager attention (so attention maps are returned)."""
    return EsmConfig(**config.to_hf_dict(), attn_implementation="eager")


def transformers_esm_model(config: EncoderConfig, state_dict: Mapping[str, torch.Tensor] | None = None) -> EsmModel:
    """A transformers ``EsmModel`` (eager) holding ``state_dict`` (EsmModel keys, no ``esm2.`` prefix)."""
    model = EsmModel(transformers_esm_config(config), add_pooling_layer=True)
    if state_dict is not None:
        result = model.load_state_dict(dict(state_dict), strict=False)
        # inv_freq is a buffer computed at construction; a state dict may carry it or not
        missing = [k for k in result.missing_keys if k != "rotary_embeddings.inv_freq"]
        unexpected = [k for k in result.unexpected_keys if "esm2." + k not in IGNORED_KEYS]
        if missing or unexpected:
            raise KeyError(f"EsmModel state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model.eval()


class ReferenceDynamics(nn.Module):
    """The reference SeqDance/ESMDance module (ESMwrap), heads exactly as published."""

    def __init__(self, config: EncoderConfig, dropout: float = 0.1) -> None:
        super().__init__()
        d, maps = config.hidden_size, config.num_attention_maps
        self.esm2 = transformers_esm_model(config)
        self.res_pred_nn = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d), nn.Dropout(dropout), nn.Linear(d, N_RESIDUE_CHANNELS)
        )
        self.res_transform_nn = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d), nn.Dropout(dropout), nn.Linear(d, 2 * d)
        )
        self.pair_middle_linear = nn.Linear(2 * d, maps)
        self.pair_pred_linear = nn.Linear(maps + maps, N_PAIR_CHANNELS)
        self.gelu = nn.GELU()
        self.softplus = nn.Softplus(beta=SOFTPLUS_BETA, threshold=SOFTPLUS_THRESHOLD)
        self.sigmoid = nn.Sigmoid()
        self.softmax = nn.Softmax(dim=-1)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], config: EncoderConfig) -> ReferenceDynamics:
        """Build and load a released-layout state dict; every learned parameter must be present."""
        model = cls(config)
        result = model.load_state_dict(dict(state_dict), strict=False)
        missing = [k for k in result.missing_keys if k != "esm2.rotary_embeddings.inv_freq"]
        unexpected = [k for k in result.unexpected_keys if k not in IGNORED_KEYS]
        if missing or unexpected:
            raise KeyError(f"reference state dict mismatch: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def _activate(self, x: torch.Tensor, activation: str) -> torch.Tensor:
        if activation == "softplus":
            return self.softplus(x)
        if activation == "sigmoid":
            return self.sigmoid(x)
        if activation == "softmax":
            return self.softmax(x)
        return self.sigmoid(x) * 2 - 1.0

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """residue (B,T,50), pair (B,T,T,13) activated; embeddings (B,T,d); attentions (B,T,T,A)."""
        esm_output = self.esm2(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
        res_emb = esm_output["last_hidden_state"]
        pair_atten = torch.cat(esm_output["attentions"], dim=1).permute(0, 2, 3, 1)

        res_pred = self.res_pred_nn(res_emb)
        residue = torch.cat(
            [self._activate(res_pred[:, :, p.channels], p.activation) for p in RESIDUE_PROPERTIES], dim=-1
        )

        s = self.res_transform_nn(res_emb)
        q, k = s.chunk(2, dim=-1)
        prod = q[:, None, :, :] * k[:, :, None, :]
        diff = q[:, None, :, :] - k[:, :, None, :]
        pair_middle = self.gelu(self.pair_middle_linear(torch.cat([prod, diff], dim=-1)))
        pair_pred = self.pair_pred_linear(torch.cat([pair_middle, pair_atten], dim=-1))
        pair = torch.cat(
            [self._activate(pair_pred[..., p.channels], p.activation) for p in PAIR_PROPERTIES], dim=-1
        )
        return {"residue": residue, "pair": pair, "embeddings": res_emb, "attentions": pair_atten}
