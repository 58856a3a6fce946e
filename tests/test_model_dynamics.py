"""DynamicsModel: output shapes and paths, SeqDance initialisation, ESMDance frozen encoder."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _checkpoints import random_dynamics_model
from conftest import require
from torch import nn

from seqdance.model import DynamicsModel
from seqdance.model.config import ENCODER_PRESETS, EncoderConfig, resolve_encoder_config
from seqdance.tokenizer import encode, pad_batch


def _batch():
    return pad_batch([encode("MKTAYIAKQRQISFVKSHF"), encode("GSHMLEDK:LLA")])


def test_output_paths_agree() -> None:
    model = random_dynamics_model("tiny", seed=4)
    ids, mask = _batch()
    with torch.no_grad():
        full = model(ids, mask, return_embeddings=True, return_attentions=True)
        folded = model(ids, mask, pair_block_rows=3)
        residue_only = model(ids, mask, pairs=False)
    b, t = ids.shape
    assert full.residue.shape == (b, t, 50) and full.pair.shape == (b, t, t, 13)
    assert full.embeddings.shape == (b, t, 32) and full.attentions.shape == (b, t, t, 8)
    assert folded.embeddings is None and folded.attentions is None
    assert residue_only.pair is None
    torch.testing.assert_close(folded.pair, full.pair, atol=1e-5, rtol=0)
    torch.testing.assert_close(residue_only.residue, full.residue, atol=1e-5, rtol=0)


def test_seqdance_reinitialisation_statistics() -> None:
    torch.manual_seed(0)
    model = DynamicsModel("tiny", "seqdance")
    assert not model.freeze_encoder
    assert all(p.requires_grad for p in model.parameters())
    for name, module in model.esm2.named_modules():
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
        elif isinstance(module, nn.Linear | nn.Embedding):
            if getattr(module, "bias", None) is not None:
                assert torch.all(module.bias == 0), name
            fan_out, fan_in = module.weight.shape
            gain = 1 / math.sqrt(2) if name.rsplit(".", 1)[-1] in ("query", "key", "value") else 1.0
            bound = gain * math.sqrt(6 / (fan_in + fan_out))
            w = module.weight.detach().abs()
            assert float(w.max()) <= bound + 1e-7, name
            assert float(w.max()) > 0.8 * bound, name  # uniform over the full Xavier range
    for layer in model.esm2.layers:
        assert layer.hidden_dropout_p == 0.1 and layer.attention.self.dropout_p == 0.1
    assert model.encoder_config.hidden_dropout == 0.1
    for head in model.heads():
        for module in head.modules():
            if isinstance(module, nn.Linear):
                assert torch.all(module.bias == 0)
    assert [k for k in model.state_dict() if k.startswith("res_pred_nn")] == [
        "res_pred_nn.0.weight", "res_pred_nn.0.bias", "res_pred_nn.2.weight", "res_pred_nn.2.bias",
        "res_pred_nn.4.weight", "res_pred_nn.4.bias",
    ]


def test_esmdance_encoder_is_frozen_and_deterministic() -> None:
    model = random_dynamics_model("tiny", "esmdance", seed=2)
    assert model.freeze_encoder and model.encoder_config.hidden_dropout == 0.0
    model.train()
    assert model.training and not model.esm2.training and model.res_pred_nn.training
    ids, mask = _batch()
    out = model(ids, mask, return_embeddings=True)
    assert not out.embeddings.requires_grad and out.embeddings.grad_fn is None  # no graph through the encoder
    (out.residue.sum() + out.pair.sum()).backward()
    assert all(p.grad is None for p in model.esm2.parameters())
    for name, p in model.named_parameters():
        if not name.startswith("esm2."):
            assert p.grad is not None, name
    maps = model.encoder_config.num_attention_maps
    assert float(model.pair_pred_linear.weight.grad[:, maps:].abs().sum()) > 0  # attention block trained
    again = model(ids, mask, return_embeddings=True)
    torch.testing.assert_close(again.embeddings, out.embeddings, atol=0, rtol=0)


def test_seqdance_trains_encoder_with_attention_gradients() -> None:
    model = random_dynamics_model("tiny", "seqdance", seed=1)
    model.train()
    ids, mask = _batch()
    out = model(ids, mask)
    out.pair.sum().backward()
    assert all(p.grad is not None for n, p in model.esm2.named_parameters() if "pooler" not in n and "contact" not in n)


def test_constructor_validates_arguments() -> None:
    with pytest.raises(ValueError, match="model_select"):
        DynamicsModel("tiny", "esm")
    with pytest.raises(ValueError, match="unknown encoder"):
        DynamicsModel("36M")
    assert DynamicsModel("tiny", "esmdance", freeze_encoder=False).freeze_encoder is False


@pytest.mark.parametrize(
    "spec", ["35M", "model_35M", "esm2_t12_35M_UR50D", "facebook/esm2_t12_35M_UR50D", "35m"]
)
def test_resolve_encoder_config_names(spec) -> None:
    assert resolve_encoder_config(spec) == ENCODER_PRESETS["35M"]


def test_resolve_encoder_config_from_dicts(shared_data) -> None:
    for name, preset in (("esm2_t6_8M_UR50D", "8M"), ("esm2_t12_35M_UR50D", "35M")):
        hf = json.loads(require(shared_data / "esm2" / name / "config.json").read_text())
        assert resolve_encoder_config(hf) == ENCODER_PRESETS[preset]
    tiny = ENCODER_PRESETS["tiny"]
    assert resolve_encoder_config(tiny.to_dict()) == tiny
    assert EncoderConfig.from_hf_dict(tiny.to_hf_dict()) == tiny
    assert tiny.preset_name == "tiny" and tiny.with_dropout(0.1, 0.1).preset_name == "tiny"
    with pytest.raises(ValueError, match="unknown encoder config field"):
        resolve_encoder_config({**tiny.to_dict(), "heads": 3})
    with pytest.raises(ValueError, match="rotary"):
        EncoderConfig.from_hf_dict({**tiny.to_hf_dict(), "position_embedding_type": "absolute"})
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(num_layers=1, hidden_size=30, num_heads=4, intermediate_size=8)


def test_checkpointed_pair_blocks_give_the_same_gradients() -> None:
    from _checkpoints import randomize_parameters_

    torch.manual_seed(0)
    model = randomize_parameters_(DynamicsModel("tiny", "esmdance", dropout=0.0), seed=6).train()
    ids, mask = _batch()
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.checkpoint_pair_blocks = flag
        out = model(ids, mask, pair_block_rows=4)
        (out.pair * torch.linspace(-1, 1, 13)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)
