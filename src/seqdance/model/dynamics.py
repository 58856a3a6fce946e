"""SeqDance / ESMDance: an ESM2 encoder plus the dynamics heads (docs/design.md#model-architecture), with the released
parameter names."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqdance.errors import InputError
from seqdance.model import files
from seqdance.model.config import EncoderConfig, esm2_select_name, resolve_encoder_config
from seqdance.model.encoder import Esm2Encoder, seqdance_init_
from seqdance.model.heads import (
    AttentionProjector,
    activate,
    mlp_head,
    pair_logits_factorised,
    project_attention_maps,
)
from seqdance.model.kinds import DEFAULT_ESM2_SOURCE, DEFAULT_MODEL_SOURCE, MODEL_SELECTS, ModelSelect
from seqdance.schema import N_PAIR_CHANNELS, N_RESIDUE_CHANNELS

if TYPE_CHECKING:
    from typing_extensions import Self




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

    ``model_select="seqdance"``: the encoder is re-initialised (Xavier, docs/design.md#model-architecture) and trained
    with dropout ``dropout``. ``"esmdance"``: the encoder is meant to hold pretrained ESM2 weights and is frozen
    (``requires_grad=False``, run under ``no_grad``, kept in eval mode by :meth:`train`). ``freeze_encoder``
    overrides the freezing. The constructor never touches the network: weights come from
    :meth:`from_pretrained` (``seqdance.load_model``) or :meth:`from_esm2`.
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
            raise InputError(f"model_select must be one of {MODEL_SELECTS}, got {model_select!r}")
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

    # --- persistence ---------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the released layout (each file replaced atomically).

        config.json is the reference's ``{"esm2_select": "model_35M", "model_select": ...}``; for an encoder
        that is no ESM2 preset, ``esm2_select`` is "custom" and ``encoder`` holds its full configuration.
        """
        config = self.encoder_config
        select_name = esm2_select_name(config)
        meta: dict[str, Any] = {"esm2_select": select_name or "custom", "model_select": self.model_select}
        if select_name is None:
            meta["encoder"] = config.with_dropout(0.0, 0.0).to_dict()
        state = files.cpu_state(self)
        state.update(files.legacy_encoder_tensors("esm2.", config, self.esm2.embeddings.word_embeddings.weight.dtype))
        files.write_checkpoint(Path(directory), meta, state)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str] = DEFAULT_MODEL_SOURCE,
        *,
        model_select: str | None = None,
        encoder: str | Mapping[str, Any] | EncoderConfig | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        revision: str | None = None,
    ) -> Self:
        """Load a SeqDance/ESMDance model (in eval mode) as an instance of ``cls``.

        ``source``: a Hugging Face repo id (default ``ChaoHou/ESMDance``), a local directory in the released
        layout (also what :meth:`save_pretrained` writes), or a training checkpoint file (``update_*.pt``; for the
        reference's, name the model with ``model_select``, and ``encoder`` unless its shapes match a preset;
        seqdance's own record both). ``model_select`` overrides the recorded one (e.g. to fine-tune the released
        ESMDance encoder as SeqDance would). Network access happens here and only here.
        """
        description, config_path, weights_path = files.resolve_source(source, revision, kind="model")
        assert weights_path is not None
        config = files.read_json(config_path) if config_path is not None else None
        state, meta = files.read_checkpoint(weights_path)
        if config is None and meta is not None and meta.get("model_select") in MODEL_SELECTS:
            config = {"model_select": meta["model_select"]}  # a seqdance training checkpoint records its model
            if meta.get("encoder") is not None:
                config["encoder"] = meta["encoder"]
        encoder_config, select = _recorded_architecture(config, model_select, encoder, state, description)
        model = files.build_without_init(lambda: cls(encoder_config, select))  # type: ignore[arg-type]
        files.load_into(model, state, source=description, encoder_prefix="esm2.", config=encoder_config)
        return files.place(model, device, dtype)

    @classmethod
    def from_esm2(
        cls,
        source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
        *,
        dropout: float = 0.1,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        revision: str | None = None,
    ) -> Self:
        """ESMDance for training: pretrained ESM2 weights (``facebook/esm2_*`` layout) frozen, fresh heads.

        ``source``: a hub id, a preset name ("35M", "650M" ...) or a local directory in the facebook layout.
        The language-model head of the checkpoint is ignored. Returned in eval mode (call ``.train()``).
        """
        description, config, state = files.read_esm2_checkpoint(source, revision)
        config = config.with_dropout(0.0, 0.0)
        model = cls(config, "esmdance", dropout=dropout)
        foreign = [k for k in state if not k.startswith(("esm.", "lm_head."))]
        if foreign:
            raise files.CheckpointError(f"{description}: unexpected keys for an ESM2 checkpoint: {', '.join(foreign)}")
        encoder_state = {k[len("esm."):]: v for k, v in state.items() if k.startswith("esm.")}
        files.load_into(model.esm2, encoder_state, source=description, encoder_prefix="", config=config)
        return files.place(model, device, dtype)


def _recorded_architecture(
    config: dict[str, Any] | None,
    model_select: str | None,
    encoder: str | Mapping[str, Any] | EncoderConfig | None,
    state: Mapping[str, torch.Tensor],
    source: str,
) -> tuple[EncoderConfig, str]:
    """Encoder architecture and model kind of a checkpoint: from its config, checked against what the caller
    asked for, else inferred from the tensor shapes."""
    if config is not None and ("model_type" in config or "num_hidden_layers" in config):
        raise files.CheckpointError(
            f"{source} is an ESM2 language-model checkpoint, not a SeqDance/ESMDance model; use "
            "seqdance.model.build_esmdance_from_esm2 (ESMDance with fresh heads) or load_esm2_masked_lm"
        )
    encoder_config = None
    if config is not None:
        if model_select is None:
            model_select = config.get("model_select")
        if "encoder" in config:
            encoder_config = resolve_encoder_config(config["encoder"])
        elif "esm2_select" in config:
            encoder_config = resolve_encoder_config(config["esm2_select"])
        if encoder_config is not None and encoder is not None:
            wanted = resolve_encoder_config(encoder)
            if wanted.with_dropout(0, 0) != encoder_config.with_dropout(0, 0):
                raise files.CheckpointError(
                    f"{source}: encoder={encoder!r} differs from the architecture recorded with it ({encoder_config})"
                )
    if encoder_config is None:
        encoder_config = resolve_encoder_config(encoder) if encoder is not None else files.infer_encoder_config(state)
    if model_select is None:
        raise InputError(
            f"{source} does not record which model it is: pass model_select='esmdance' (frozen pretrained encoder) "
            "or 'seqdance' (encoder trained from scratch)"
        )
    if model_select not in MODEL_SELECTS:
        raise InputError(f"model_select must be one of {MODEL_SELECTS}, got {model_select!r}")
    return encoder_config, model_select
