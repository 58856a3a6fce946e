"""The ESM2 transformer encoder, written in plain torch.

Why not ``transformers.EsmModel``: (1) each call chooses between fused SDPA attention, which never materialises
attention maps, and explicit softmax probabilities (for the pair head), and explicit probabilities can be handed
layer by layer to a consumer instead of being stacked; (2) the numerics and parameter names stay fixed while
transformers refactors ESM (4.x → 5.x moved rotary buffers, masks and attention back-ends); (3) no network and
no config machinery in constructors. Parameter names mirror transformers 4.48 ``EsmModel`` so released state
dicts load unchanged; equality with ``EsmModel`` (eager attention) is tested to 1e-5.

ESM2 specifics reproduced here: pre-LayerNorm blocks, exact (erf) GELU, the query scaled by head_dim^-0.5
*before* the rotary embedding, rotary with ``rotate_half``, token dropout (embeddings of ``<mask>`` zeroed and
rescaled by the training mask ratio), embeddings multiplied by the attention mask, padded keys masked with a
large negative additive bias, and a final ``emb_layer_norm_after``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seqdance.errors import InputError
from seqdance.model.config import ROTARY_BASE, EncoderConfig

#: Fraction of tokens ESM2 replaced by <mask> during its training (15% selected × 80% masked).
ESM2_TRAIN_MASK_RATIO = 0.15 * 0.8

#: ``attention_hook(layer_index, probs)`` receives each layer's attention probabilities (B, heads, T, T).
AttentionHook = Callable[[int, torch.Tensor], None]


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, x·Φ(x) (ESM2 uses the erf form)."""
    return F.gelu(x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary_inv_freq(head_dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Inverse frequencies 1 / base^(2i/dim) of ESM2's rotary embedding (float32)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (ROTARY_BASE**exponents)


def rotary_cos_sin(length: int, head_dim: int, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (length, head_dim) for positions 0..length-1, computed in float32."""
    positions = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.outer(positions, rotary_inv_freq(head_dim, device))
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


class Esm2Embeddings(nn.Module):
    """Token embeddings with ESM2's token dropout; no absolute positions (they are rotary)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_dropout = config.token_dropout
        self.mask_token_id = config.mask_token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        embeddings = self.word_embeddings(input_ids)
        if self.token_dropout:
            is_mask = input_ids == self.mask_token_id
            embeddings = embeddings.masked_fill(is_mask.unsqueeze(-1), 0.0)
            lengths = attention_mask.sum(-1) if attention_mask is not None else input_ids.shape[1]
            observed = is_mask.sum(-1).float() / lengths
            embeddings = (embeddings * (1 - ESM2_TRAIN_MASK_RATIO) / (1 - observed)[:, None, None]).to(
                embeddings.dtype
            )
        if attention_mask is not None:
            embeddings = (embeddings * attention_mask.unsqueeze(-1)).to(embeddings.dtype)
        return embeddings


class Esm2SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_bias: torch.Tensor | None,
        need_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query = self._heads(self.query(hidden)) * self.head_dim**-0.5
        key = self._heads(self.key(hidden))
        value = self._heads(self.value(hidden))
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        dropout_p = self.dropout_p if self.training else 0.0
        if need_probs:
            scores = torch.matmul(query, key.transpose(-1, -2))
            if key_bias is not None:
                scores = scores + key_bias
            if scores.dtype in (torch.float16, torch.bfloat16):
                probs = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
            else:
                probs = torch.softmax(scores, dim=-1)
            probs = F.dropout(probs, p=dropout_p, training=self.training)
            context = torch.matmul(probs, value)
        else:
            probs = None
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=key_bias, dropout_p=dropout_p, scale=1.0
            )
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, -1), probs


class Esm2SelfOutput(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class Esm2Attention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self = Esm2SelfAttention(config)
        self.output = Esm2SelfOutput(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Esm2Intermediate(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)


class Esm2Output(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)


class Esm2Layer(nn.Module):
    """One pre-LayerNorm transformer block."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention = Esm2Attention(config)
        self.intermediate = Esm2Intermediate(config)
        self.output = Esm2Output(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.hidden_dropout_p = config.hidden_dropout

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_bias: torch.Tensor | None,
        need_probs: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn = self.attention
        context, probs = attn.self(attn.LayerNorm(hidden), cos, sin, key_bias, need_probs)
        hidden = hidden + F.dropout(attn.output.dense(context), self.hidden_dropout_p, self.training)
        inner = gelu(self.intermediate.dense(self.LayerNorm(hidden)))
        hidden = hidden + F.dropout(self.output.dense(inner), self.hidden_dropout_p, self.training)
        return hidden, probs


class Esm2Stack(nn.Module):
    """The layers and the final LayerNorm (``encoder.*`` in the state dict)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Esm2Layer(config) for _ in range(config.num_layers))
        self.emb_layer_norm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Esm2Pooler(nn.Module):
    """Kept only so state dicts match ``EsmModel`` (the dynamics heads never use it)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class Esm2ContactHead(nn.Module):
    """ESM2's contact-regression weights, kept only so state dicts match ``EsmModel``."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.regression = nn.Linear(config.num_attention_maps, 1)


class Esm2Encoder(nn.Module):
    """ESM2 encoder. ``forward(input_ids, attention_mask, need_attentions)`` -> (hidden (B,T,d), maps | None).

    Attention maps are returned as (B, layers×heads, T, T), layer-major and head-minor (query i, key j).
    """

    def __init__(self, config: EncoderConfig, *, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Esm2Embeddings(config)
        self.encoder = Esm2Stack(config)
        self.pooler = Esm2Pooler(config) if add_pooling_layer else None
        self.contact_head = Esm2ContactHead(config)
        #: Recompute each layer's activations in the backward pass (training memory against time).
        self.gradient_checkpointing = False

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def set_dropout(self, hidden: float, attention: float) -> None:
        """Set the hidden-state and attention-probability dropout of every layer (and the config)."""
        self.config = self.config.with_dropout(hidden, attention)
        for layer in self.layers:
            layer.hidden_dropout_p = self.config.hidden_dropout
            layer.attention.self.dropout_p = self.config.attention_dropout

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        need_attentions: bool = False,
        *,
        attention_hook: AttentionHook | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the encoder.

        ``need_attentions=False`` and no ``attention_hook`` uses fused SDPA (no maps exist). ``attention_hook``
        gets each layer's probabilities as they are computed, so a consumer can reduce them without the
        (B, layers×heads, T, T) stack ever existing.
        """
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, tokens), got {tuple(input_ids.shape)}")
        hidden = self.embeddings(input_ids, attention_mask)
        length = input_ids.shape[1]
        cos, sin = rotary_cos_sin(length, self.config.head_dim, hidden.device, hidden.dtype)
        key_bias = None
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.to(torch.bool)[:, None, None, :]
            key_bias = torch.zeros(keep.shape, dtype=hidden.dtype, device=hidden.device)
            key_bias = key_bias.masked_fill(~keep, torch.finfo(hidden.dtype).min)
        need_probs = need_attentions or attention_hook is not None
        maps: list[torch.Tensor] = []
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for index, layer in enumerate(self.layers):
            if recompute:
                from torch.utils.checkpoint import checkpoint

                hidden, probs = checkpoint(layer, hidden, cos, sin, key_bias, need_probs, use_reentrant=False)
            else:
                hidden, probs = layer(hidden, cos, sin, key_bias, need_probs)
            if probs is not None:
                if attention_hook is not None:
                    attention_hook(index, probs)
                if need_attentions:
                    maps.append(probs)
        hidden = self.encoder.emb_layer_norm_after(hidden)
        return hidden, (torch.cat(maps, dim=1) if need_attentions else None)


def seqdance_init_(encoder: nn.Module, dropout: float | None = 0.1) -> None:
    """SeqDance's re-initialisation of an encoder (docs/design.md#model-architecture).

    Xavier-uniform weights for every Linear and Embedding (query/key/value with gain 1/√2), zero biases,
    LayerNorm weight 1 / bias 0, and hidden and attention-probability dropout ``dropout`` (None: unchanged).
    """
    with torch.no_grad():
        for name, module in encoder.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                leaf = name.rsplit(".", 1)[-1]
                gain = 2**-0.5 if leaf in ("query", "key", "value") else 1.0
                nn.init.xavier_uniform_(module.weight, gain=gain)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    if dropout is not None and isinstance(encoder, Esm2Encoder):
        encoder.set_dropout(dropout, dropout)
