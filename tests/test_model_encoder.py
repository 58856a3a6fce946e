"""Our ESM2 encoder against transformers' EsmModel (eager attention) with the same weights."""

from __future__ import annotations

import pytest
import torch
from _checkpoints import randomize_parameters_
from reference_model import transformers_esm_model

from seqdance.model.config import ENCODER_PRESETS, EncoderConfig
from seqdance.model.encoder import Esm2Encoder
from seqdance.tokenizer import EOS_ID, MASK_ID, PAD_ID, encode, pad_batch

TINY = ENCODER_PRESETS["tiny"]
ODD = EncoderConfig(num_layers=3, hidden_size=48, num_heads=6, intermediate_size=80)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    seqs = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLE<mask>DKLLA", "ACDEFGHIKLMNPQRSTVWY:MKV<mask><mask>"]
    return pad_batch([encode(s) for s in seqs])


@pytest.mark.parametrize("config", [TINY, ODD], ids=["tiny", "3x48x6"])
def test_encoder_matches_transformers_eager(config: EncoderConfig) -> None:
    ours = randomize_parameters_(Esm2Encoder(config), seed=3).eval()
    ref = transformers_esm_model(config, ours.state_dict())
    ids, mask = _batch()
    assert (ids == PAD_ID).any() and (ids == MASK_ID).any()  # padded batch with <mask> tokens (token dropout)
    with torch.no_grad():
        hidden, maps = ours(ids, mask, need_attentions=True)
        out = ref(input_ids=ids, attention_mask=mask, output_attentions=True)
    ref_maps = torch.cat(out.attentions, dim=1)
    assert maps.shape == (3, config.num_attention_maps, ids.shape[1], ids.shape[1])
    valid = mask.bool()
    torch.testing.assert_close(hidden[valid], out.last_hidden_state[valid], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps, ref_maps, atol=1e-5, rtol=0)
    # the padding positions of the full tensors agree too (same masking semantics)
    torch.testing.assert_close(hidden, out.last_hidden_state, atol=1e-5, rtol=0)


def test_token_dropout_rescales_by_observed_mask_ratio() -> None:
    enc = Esm2Encoder(TINY).eval()
    ids = torch.tensor([[0, 5, MASK_ID, 6, 7, EOS_ID, PAD_ID]])
    mask = (ids != PAD_ID).long()
    emb = enc.embeddings(ids, mask)
    raw = enc.embeddings.word_embeddings(ids)
    scale = (1 - 0.15 * 0.8) / (1 - 1 / 6)  # one <mask> among six non-pad tokens
    torch.testing.assert_close(emb[0, 1], raw[0, 1] * scale)
    assert torch.count_nonzero(emb[0, 2]) == 0  # <mask> embedding zeroed
    assert torch.count_nonzero(emb[0, 6]) == 0  # padding multiplied by the attention mask


def test_sdpa_path_equals_explicit_attention() -> None:
    enc = randomize_parameters_(Esm2Encoder(ODD), seed=5).eval()
    ids, mask = _batch()
    with torch.no_grad():
        fused, none = enc(ids, mask, need_attentions=False)
        explicit, maps = enc(ids, mask, need_attentions=True)
        nomask, _ = enc(ids[:1, :10], None)
        withmask, _ = enc(ids[:1, :10], torch.ones_like(ids[:1, :10]), need_attentions=True)
    assert none is None and maps is not None
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=0)
    torch.testing.assert_close(nomask, withmask, atol=1e-5, rtol=0)


def test_attention_hook_sees_every_layer_in_order() -> None:
    enc = randomize_parameters_(Esm2Encoder(ODD), seed=1).eval()
    ids, mask = _batch()
    seen: list[tuple[int, torch.Tensor]] = []
    with torch.no_grad():
        _, maps = enc(ids, mask, need_attentions=True, attention_hook=lambda i, p: seen.append((i, p)))
    assert [i for i, _ in seen] == list(range(ODD.num_layers))
    torch.testing.assert_close(torch.cat([p for _, p in seen], dim=1), maps)
    # softmax rows sum to one and padded keys get no attention
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert float(maps[1][..., ~mask[1].bool()].abs().max()) == 0.0


def test_float64_matches_float32() -> None:
    enc = randomize_parameters_(Esm2Encoder(TINY), seed=2).eval()
    ids, mask = _batch()
    with torch.no_grad():
        h32, _ = enc(ids, mask)
        h64, _ = enc.to(torch.float64)(ids, mask)
    assert h64.dtype == torch.float64
    torch.testing.assert_close(h64.float(), h32, atol=1e-5, rtol=0)


def test_dropout_is_active_only_in_training() -> None:
    enc = randomize_parameters_(Esm2Encoder(TINY.with_dropout(0.3, 0.3)), seed=0)
    ids, mask = _batch()
    enc.train()
    a, _ = enc(ids, mask)
    b, _ = enc(ids, mask, need_attentions=True)
    assert not torch.allclose(a, b)
    enc.eval()
    c, _ = enc(ids, mask)
    d, _ = enc(ids, mask, need_attentions=True)
    torch.testing.assert_close(c, d, atol=1e-5, rtol=0)


def test_bad_input_shape_is_reported() -> None:
    with pytest.raises(ValueError, match="batch, tokens"):
        Esm2Encoder(TINY)(torch.zeros(5, dtype=torch.long))
