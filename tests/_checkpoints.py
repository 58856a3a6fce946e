"""Writers of local checkpoints with random weights, in the layouts the loaders must read (no network).

* :func:`write_released_checkpoint`: the ``ChaoHou/SeqDance`` / ``ChaoHou/ESMDance`` layout written by the
  reference (transformers 4.48, PyTorchModelHubMixin): ``config.json`` + ``model.safetensors`` with per-layer
  rotary ``inv_freq``, the unused ``position_embeddings``, pooler and contact-head weights.
* :func:`write_update_checkpoint`: a reference training state dict ``update_*.pt`` (DDP ``module.`` prefix).
* :func:`write_esm2_mlm_checkpoint`: the ``facebook/esm2_*`` layout (HF ``config.json`` + ``esm.*``/``lm_head.*``).

Weights are random but non-trivial (biases and LayerNorm parameters too), so a mis-mapped key changes outputs.
The keys are spelled out here, independently of ``seqdance.model.loading``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from seqdance.model.config import EncoderConfig, esm2_select_name, resolve_encoder_config
from seqdance.model.dynamics import DynamicsModel
from seqdance.model.encoder import rotary_inv_freq
from seqdance.model.esm_lm import EsmMaskedLM


def randomize_parameters_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with seeded random values of a sensible scale (weights ~ N(0, 1/fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    norm_weights = {
        id(m.weight) for m in module.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None
    }
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.normal_(generator=gen)
            if id(param) in norm_weights:
                param.mul_(0.1).add_(1.0)
            elif param.dim() == 1:
                param.mul_(0.1)
            elif "word_embeddings" not in name:
                param.mul_(param.shape[1] ** -0.5)
    return module


def random_dynamics_model(encoder: str | EncoderConfig = "tiny", model_select: str = "esmdance",
                          seed: int = 0) -> DynamicsModel:
    """A DynamicsModel whose every parameter (encoder, pooler, contact head, heads) is random."""
    torch.manual_seed(seed)
    return randomize_parameters_(DynamicsModel(encoder, model_select), seed).eval()


def legacy_encoder_keys(prefix: str, config: EncoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """The buffers transformers 4.48 saved that our encoder does not hold."""
    gen = torch.Generator().manual_seed(seed + 1)
    out = {
        f"{prefix}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq": rotary_inv_freq(config.head_dim)
        for i in range(config.num_layers)
    }
    out[f"{prefix}embeddings.position_embeddings.weight"] = torch.randn(
        config.max_position_embeddings, config.hidden_size, generator=gen
    )
    return out


def released_state_dict(model: DynamicsModel, legacy_keys: bool = True) -> dict[str, torch.Tensor]:
    """The model's tensors under the released key names (``esm2.*`` + heads)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if legacy_keys:
        state.update(legacy_encoder_keys("esm2.", model.encoder_config))
    return state


def _write_config(directory: Path, config: EncoderConfig, model_select: str) -> None:
    data: dict[str, object] = {"esm2_select": esm2_select_name(config) or "custom", "model_select": model_select}
    if esm2_select_name(config) is None:
        data["encoder"] = config.to_dict()
    (directory / "config.json").write_text(json.dumps(data, indent=2))


def write_released_checkpoint(
    path: str | Path,
    encoder: str | EncoderConfig = "tiny",
    model_select: str = "esmdance",
    seed: int = 0,
    legacy_keys: bool = True,
    *,
    drop_keys: tuple[str, ...] = (),
    extra_keys: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a released-layout checkpoint directory with random weights; returns the directory.

    For a real preset config.json is exactly the reference's ``{"esm2_select": "model_35M", "model_select": ...}``;
    other shapes (e.g. "tiny") add an ``encoder`` entry. ``drop_keys``/``extra_keys`` corrupt it for error tests.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    config = resolve_encoder_config(encoder)
    state = released_state_dict(random_dynamics_model(config, model_select, seed), legacy_keys)
    for key in drop_keys:
        del state[key]
    state.update(extra_keys or {})
    _write_config(directory, config, model_select)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def write_update_checkpoint(
    path: str | Path,
    encoder: str | EncoderConfig = "tiny",
    model_select: str = "seqdance",
    seed: int = 0,
    *,
    prefix: str = "module.",
    wrap_key: str | None = None,
    legacy_keys: bool = True,
) -> Path:
    """Write a reference training checkpoint (``torch.save`` of the state dict, DDP ``module.`` prefix)."""
    config = resolve_encoder_config(encoder)
    state = released_state_dict(random_dynamics_model(config, model_select, seed), legacy_keys)
    state = {prefix + k: v for k, v in state.items()}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({wrap_key: state} if wrap_key else state, target)
    return target


def random_esm2_mlm(encoder: str | EncoderConfig = "tiny", seed: int = 0) -> EsmMaskedLM:
    torch.manual_seed(seed)
    return randomize_parameters_(EsmMaskedLM(encoder), seed).eval()


def write_esm2_mlm_checkpoint(
    path: str | Path,
    encoder: str | EncoderConfig = "tiny",
    seed: int = 0,
    legacy_keys: bool = True,
    *,
    include_decoder: bool = False,
) -> Path:
    """Write a ``facebook/esm2_*``-layout directory (HF config.json, model.safetensors) with random weights."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    model = random_esm2_mlm(encoder, seed)
    config = model.encoder_config
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if legacy_keys:
        state.update(legacy_encoder_keys("esm.", config, seed))
    if include_decoder:
        state["lm_head.decoder.weight"] = state["esm.embeddings.word_embeddings.weight"].clone()
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
