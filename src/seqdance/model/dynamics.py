"""SeqDance / ESMDance: an ESM2 encoder plus the dynamics heads (DESIGN §6), with the released parameter names."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from seqdance.model.config import EncoderConfig, resolve_encoder_config
from seqdance.model.encoder import Esm2Encoder, seqdance_init_
from seqdance.model.heads import (
    AttentionProjector,
    activate,
    mlp_head,
    pair_logits_factorised,
    project_attention_maps,
)
from seqdance.schema import N_PAIR_CHANNELS, N_RESIDUE_CHANNELS

ModelSelect = Literal["esmdance", "seqdance"]
MODEL_SELECTS: tuple[str, ...] = ("esmdance", "seqdance")


@dataclass
class DynamicsOutput:
    """Token-aligned outputs (position 0 is <cls>); values at padding positions are unspecified.

    residue (B,T,50) and pair (B,T,T,13) hold activated property values in the schema's channel layout;
    embeddings (B,T,d) is the last hidden state after the final LayerNorm; attentions (B,T,T,layers×heads)
    are the attention probabilities (query i, key j), layer-major and head-minor (a permuted view).
    """

    residue: torch.Tensor
    pair: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    attentions: torch.Tensor | None = None


class DynamicsModel(nn.Module):
    """An ESM2 encoder (``esm2``) with residue and pair heads predicting the 23 dynamic properties.

    ``model_select="seqdance"``: the encoder is re-initialised (Xavier, DESIGN §6) and trained with dropout
    ``dropout``. ``"esmdance"``: the encoder is meant to hold pretrained ESM2 weights and is frozen
    (``requires_grad=False``, run under ``no_grad``, kept in eval mode by :meth:`train`). ``freeze_encoder``
    overrides the freezing. The constructor never touches the network: weights come from :func:`load_model`
    or :func:`build_esmdance_from_esm2`.
    """

    def __init__(
        self,
        encoder: str | Mapping[str, Any] | EncoderConfig = "35M",
        model_select: ModelSelect = "esmdance",
        *,
        dropout: float = 0.1,
        freeze_encoder: bool | None = None,
    ) -> None:
        super().__init__()
        if model_select not in MODEL_SELECTS:
            raise ValueError(f"model_select must be one of {MODEL_SELECTS}, got {model_select!r}")
        config = resolve_encoder_config(encoder)
        self.model_select: str = model_select
        self.dropout = float(dropout)
        self.esm2 = Esm2Encoder(config)
        seqdance_init_(self.esm2, dropout=self.dropout if model_select == "seqdance" else None)

        d, maps = config.hidden_size, config.num_attention_maps
        self.res_pred_nn = mlp_head(d, N_RESIDUE_CHANNELS, self.dropout)
        self.res_transform_nn = mlp_head(d, 2 * d, self.dropout)
        self.pair_middle_linear = nn.Linear(2 * d, maps)
        self.pair_pred_linear = nn.Linear(2 * maps, N_PAIR_CHANNELS)
        with torch.no_grad():
            for head in self.heads():
                for module in head.modules():
                    if isinstance(module, nn.Linear) and module.bias is not None:
                        module.bias.zero_()

        #: Training memory option: recompute pair-head blocks in backward (see ``pair_logits_factorised``).
        self.checkpoint_pair_blocks = False
        self.freeze_encoder = model_select == "esmdance" if freeze_encoder is None else bool(freeze_encoder)
        if self.freeze_encoder:
            self.esm2.requires_grad_(False)
            self.esm2.eval()

    # --- structure ---------------------------------------------------------------------------------------

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.esm2.config

    def heads(self) -> tuple[nn.Module, ...]:
        return (self.res_pred_nn, self.res_transform_nn, self.pair_middle_linear, self.pair_pred_linear)

    def train(self, mode: bool = True) -> DynamicsModel:
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (deterministic)."""
        super().train(mode)
        if self.freeze_encoder:
            self.esm2.eval()
        return self

    # --- forward -----------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        pairs: bool = True,
        return_embeddings: bool = False,
        return_attentions: bool = False,
        pair_block_rows: int | None = None,
    ) -> DynamicsOutput:
        """Predict activated residue (B,T,50) and, with ``pairs``, pair (B,T,T,13) properties.

        Without pairs and attentions the encoder runs fused SDPA attention. With pairs but no returned
        attentions each layer's maps are folded into the pair logits as they are made (never stacked).
        """
        grad_wanted = torch.is_grad_enabled()
        frozen = self.freeze_encoder
        maps_out = None
        projector = None
        if pairs and not return_attentions:
            projector = AttentionProjector(
                self.pair_pred_linear.weight[:, self.encoder_config.num_attention_maps :],
                self.encoder_config.num_heads,
                grad_enabled=grad_wanted,
            )
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden, maps = self.esm2(
                input_ids, attention_mask, need_attentions=return_attentions, attention_hook=projector
            )

        residue_logits = self.res_pred_nn(hidden)
        pair_logits = None
        if pairs:
            if projector is not None:
                attention_term = projector.result(input_ids.shape[1])
            else:
                attention_term = project_attention_maps(
                    maps, self.pair_pred_linear.weight[:, self.encoder_config.num_attention_maps :]
                )
            q, k = self.res_transform_nn(hidden).chunk(2, dim=-1)
            pair_logits = pair_logits_factorised(
                q, k, self.pair_middle_linear, self.pair_pred_linear, attention_term,
                block_rows=pair_block_rows, checkpoint_blocks=self.checkpoint_pair_blocks and self.training,
            )
            del attention_term
        if return_attentions:
            maps_out = maps.permute(0, 2, 3, 1)
        residue, pair = activate(residue_logits, pair_logits, inplace=not torch.is_grad_enabled())
        assert residue is not None
        return DynamicsOutput(
            residue=residue,
            pair=pair,
            embeddings=hidden if return_embeddings else None,
            attentions=maps_out,
        )

    def predict(self, sequences: Any, **kwargs: Any) -> list[Any]:
        """Residue-aligned predictions per sequence; see :func:`seqdance.model.predict.predict`."""
        from seqdance.model.predict import predict

        return predict(self, sequences, **kwargs)

    # --- persistence ---------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the layout of the released checkpoints."""
        from seqdance.model.loading import save_dynamics_model

        save_dynamics_model(self, directory)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike[str] = "ChaoHou/ESMDance", **kwargs: Any) -> DynamicsModel:
        """Same as :func:`seqdance.load_model`."""
        from seqdance.model.loading import load_model

        return load_model(source, **kwargs)
