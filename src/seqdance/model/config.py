"""ESM2-family encoder configurations: the presets of docs/design.md#model-architecture and conversion to/from Hugging
Face configs.

The field names are ours (short, explicit); :meth:`EncoderConfig.to_hf_dict` / :meth:`EncoderConfig.from_hf_dict`
translate to the ``config.json`` of the ``facebook/esm2_*`` checkpoints (``EsmConfig`` names).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqdance.errors import InputError
from seqdance.tokenizer import ESM2_VOCAB, MASK_ID, PAD_ID

#: Base of the rotary position embedding of every ESM2 model.
ROTARY_BASE = 10000.0


@dataclass(frozen=True)
class EncoderConfig:
    """Shape and regularisation of an ESM2-style encoder (rotary positions, pre-LayerNorm blocks, GELU)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int = len(ESM2_VOCAB)
    pad_token_id: int = PAD_ID
    mask_token_id: int = MASK_ID
    max_position_embeddings: int = 1026
    layer_norm_eps: float = 1e-5
    token_dropout: bool = True
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "intermediate_size", "vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise InputError(f"EncoderConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_heads:
            raise InputError(
                f"EncoderConfig: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.head_dim % 2:
            raise InputError(f"EncoderConfig: rotary embeddings need an even head size, got {self.head_dim}")
        for name in ("hidden_dropout", "attention_dropout"):
            p = float(getattr(self, name))
            if not 0.0 <= p < 1.0:
                raise InputError(f"EncoderConfig.{name} must be in [0, 1), got {p}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_attention_maps(self) -> int:
        """Number of attention maps the pair head sees: layers × heads (240 for ESM2-35M)."""
        return self.num_layers * self.num_heads

    @property
    def preset_name(self) -> str | None:
        """Name of the preset with this architecture (dropout ignored), or None."""
        shape = self.with_dropout(0.0, 0.0)
        for name, preset in ENCODER_PRESETS.items():
            if preset == shape:
                return name
        return None

    def with_dropout(self, hidden: float, attention: float) -> EncoderConfig:
        return dataclasses.replace(self, hidden_dropout=float(hidden), attention_dropout=float(attention))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderConfig:
        """Build from our field names or from a Hugging Face ``EsmConfig`` dict (``num_hidden_layers`` ...)."""
        if "num_hidden_layers" in data or "model_type" in data:
            return cls.from_hf_dict(data)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InputError(f"unknown encoder config field(s) {unknown}; known: {sorted(fields)}")
        return cls(**dict(data))

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` content of a ``facebook/esm2_*`` checkpoint with this architecture."""
        return {
            "architectures": ["EsmForMaskedLM"],
            "model_type": "esm",
            "attention_probs_dropout_prob": self.attention_dropout,
            "hidden_dropout_prob": self.hidden_dropout,
            "emb_layer_norm_before": False,
            "hidden_act": "gelu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "is_folding_model": False,
            "layer_norm_eps": self.layer_norm_eps,
            "mask_token_id": self.mask_token_id,
            "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "rotary",
            "token_dropout": self.token_dropout,
            "vocab_size": self.vocab_size,
            "torch_dtype": "float32",
        }

    @classmethod
    def from_hf_dict(cls, data: Mapping[str, Any]) -> EncoderConfig:
        """Read a Hugging Face ESM ``config.json``; refuse architectures this encoder does not implement."""
        if data.get("model_type", "esm") != "esm":
            raise InputError(f"config.json describes a {data.get('model_type')!r} model, not an ESM model")
        if data.get("position_embedding_type", "rotary") != "rotary":
            raise InputError(
                "only ESM2-style encoders with rotary position embeddings are supported; this config has "
                f"position_embedding_type={data.get('position_embedding_type')!r} (ESM-1b?)"
            )
        if data.get("emb_layer_norm_before"):
            raise InputError("configs with emb_layer_norm_before=True (ESM-1b) are not supported; ESM2 has False")
        if data.get("is_folding_model"):
            raise InputError("ESMFold configs are not supported; use an ESM2 language-model checkpoint")
        if data.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"unsupported hidden_act {data.get('hidden_act')!r}; ESM2 uses 'gelu'")
        rope = data.get("rope_parameters") if isinstance(data.get("rope_parameters"), Mapping) else {}
        theta = rope.get("rope_theta", data.get("rope_theta", ROTARY_BASE))  # written by transformers 5
        if theta is not None and float(theta) != ROTARY_BASE:
            raise InputError(f"config.json has rotary base rope_theta={theta}; ESM2 encoders use {ROTARY_BASE:g}")
        try:
            return cls(
                num_layers=int(data["num_hidden_layers"]),
                hidden_size=int(data["hidden_size"]),
                num_heads=int(data["num_attention_heads"]),
                intermediate_size=int(data["intermediate_size"]),
                vocab_size=int(data.get("vocab_size", len(ESM2_VOCAB))),
                pad_token_id=int(data.get("pad_token_id", PAD_ID)),
                mask_token_id=int(data.get("mask_token_id", MASK_ID)),
                max_position_embeddings=int(data.get("max_position_embeddings", 1026)),
                layer_norm_eps=float(data.get("layer_norm_eps", 1e-5)),
                token_dropout=bool(data.get("token_dropout", True)),
                hidden_dropout=float(data.get("hidden_dropout_prob", 0.0)),
                attention_dropout=float(data.get("attention_probs_dropout_prob", 0.0)),
            )
        except KeyError as exc:
            raise InputError(f"ESM config.json lacks the field {exc.args[0]!r}") from None


def _preset(layers: int, hidden: int, heads: int) -> EncoderConfig:
    return EncoderConfig(num_layers=layers, hidden_size=hidden, num_heads=heads, intermediate_size=4 * hidden)


#: ESM2 architectures (pretrained dropout 0) and a tiny one for tests.
ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "8M": _preset(6, 320, 20),
    "35M": _preset(12, 480, 20),
    "150M": _preset(30, 640, 20),
    "650M": _preset(33, 1280, 20),
    "3B": _preset(36, 2560, 40),
    "15B": _preset(48, 5120, 40),
    "tiny": EncoderConfig(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64),
}

#: Hugging Face repository of the pretrained ESM2 weights of each real preset.
ESM2_HUB_IDS: dict[str, str] = {
    "8M": "facebook/esm2_t6_8M_UR50D",
    "35M": "facebook/esm2_t12_35M_UR50D",
    "150M": "facebook/esm2_t30_150M_UR50D",
    "650M": "facebook/esm2_t33_650M_UR50D",
    "3B": "facebook/esm2_t36_3B_UR50D",
    "15B": "facebook/esm2_t48_15B_UR50D",
}

_ESM2_NAME = re.compile(r"^(?:facebook/)?esm2_t(\d+)_(\d+[MB])_UR50D$")


def resolve_encoder_config(spec: str | Mapping[str, Any] | EncoderConfig) -> EncoderConfig:
    """An :class:`EncoderConfig` from a preset key ("35M"), the reference's name ("model_35M"), an ESM2 model
    name ("esm2_t12_35M_UR50D" or "facebook/esm2_t12_35M_UR50D"), a dict (ours or an HF config) or a config."""
    if isinstance(spec, EncoderConfig):
        return spec
    if isinstance(spec, Mapping):
        return EncoderConfig.from_dict(spec)
    if not isinstance(spec, str):
        raise TypeError(f"encoder must be a preset name, a dict or an EncoderConfig, not {type(spec).__name__}")
    key = spec.strip()
    if key.startswith("model_"):
        key = key[len("model_"):]
    match = _ESM2_NAME.match(key)
    if match:
        key = match.group(2)
        preset = ENCODER_PRESETS.get(key)
        if preset is None or preset.num_layers != int(match.group(1)):
            raise InputError(f"unknown ESM2 model {spec!r}; known: {', '.join(ESM2_HUB_IDS.values())}")
        return preset
    for name, preset in ENCODER_PRESETS.items():
        if key.lower() == name.lower():
            return preset
    raise InputError(
        f"unknown encoder {spec!r}; use one of the presets {', '.join(ENCODER_PRESETS)}, 'model_35M', "
        "an ESM2 name such as 'facebook/esm2_t12_35M_UR50D', a dict or an EncoderConfig"
    )


def esm2_select_name(config: EncoderConfig) -> str | None:
    """The reference's ``esm2_select`` value ("model_35M") for a preset architecture, else None."""
    name = config.preset_name
    return None if name is None or name == "tiny" else f"model_{name}"
