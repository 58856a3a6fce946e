"""Loading released-layout checkpoints, training checkpoints and ESM2 weights; saving; error messages."""

from __future__ import annotations

import json

import pytest
import torch
from _checkpoints import (
    random_dynamics_model,
    released_state_dict,
    write_esm2_mlm_checkpoint,
    write_released_checkpoint,
    write_update_checkpoint,
)
from reference_model import ReferenceDynamics
from safetensors.torch import load_file

import seqdance
from seqdance.errors import UnsafeFileError
from seqdance.model import (
    CheckpointError,
    DynamicsModel,
    EsmMaskedLM,
    ModelSourceError,
    build_esmdance_from_esm2,
    load_esm2_masked_lm,
    load_model,
)
from seqdance.model.config import ENCODER_PRESETS
from seqdance.tokenizer import encode, pad_batch

TOL = {"atol": 1e-4, "rtol": 0}


def _batch():
    return pad_batch([encode("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"), encode("GSHM<mask>EDK:LLAW"), encode("ACDEFG")])


def _assert_matches_reference(model: DynamicsModel, directory, ids, mask) -> None:
    ref = ReferenceDynamics.from_state_dict(load_file(directory / "model.safetensors"), model.encoder_config)
    with torch.no_grad():
        expected = ref(ids, mask)
        full = model(ids, mask, return_embeddings=True, return_attentions=True)
        folded = model(ids, mask, pair_block_rows=5)
        residue_only = model(ids, mask, pairs=False)
    valid = mask.bool()
    pair_valid = valid[:, :, None] & valid[:, None, :]
    for out in (full, folded):
        torch.testing.assert_close(out.residue[valid], expected["residue"][valid], **TOL)
        torch.testing.assert_close(out.pair[pair_valid], expected["pair"][pair_valid], **TOL)
    torch.testing.assert_close(residue_only.residue[valid], expected["residue"][valid], **TOL)
    torch.testing.assert_close(full.embeddings[valid], expected["embeddings"][valid], **TOL)
    torch.testing.assert_close(full.attentions[pair_valid], expected["attentions"][pair_valid], **TOL)


@pytest.mark.parametrize("model_select", ["esmdance", "seqdance"])
def test_released_layout_matches_reference_formulation(tmp_path, model_select) -> None:
    directory = write_released_checkpoint(tmp_path / "ck", "tiny", model_select, seed=7)
    model = load_model(directory)
    assert model.model_select == model_select and not model.training
    assert model.freeze_encoder == (model_select == "esmdance")
    frozen = model_select == "esmdance"
    assert all(p.requires_grad != frozen for p in model.esm2.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("esm2."))
    ids, mask = _batch()
    _assert_matches_reference(model, directory, ids, mask)


def test_released_35m_checkpoint_matches_reference(tmp_path) -> None:
    directory = write_released_checkpoint(tmp_path / "ESMDance", "35M", "esmdance", seed=1)
    assert json.loads((directory / "config.json").read_text()) == {"esm2_select": "model_35M",
                                                                   "model_select": "esmdance"}
    keys = set(load_file(directory / "model.safetensors"))
    assert "esm2.encoder.layer.11.attention.self.rotary_embeddings.inv_freq" in keys
    assert "esm2.embeddings.position_embeddings.weight" in keys and "esm2.contact_head.regression.weight" in keys
    model = load_model(directory)
    assert model.encoder_config == ENCODER_PRESETS["35M"]
    ids, mask = pad_batch([encode("MKTAYIAKQRQISFVKSHFSRQ"), encode("GSHMLE")])
    _assert_matches_reference(model, directory, ids, mask)


def test_key_names_equal_transformers_448_layout() -> None:
    """Our esm2.* keys + the legacy buffers = transformers' EsmModel keys with per-layer inv_freq."""
    from reference_model import transformers_esm_model

    config = ENCODER_PRESETS["tiny"]
    hf_keys = {"esm2." + k for k in transformers_esm_model(config).state_dict()} - {"esm2.rotary_embeddings.inv_freq"}
    hf_keys |= {f"esm2.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq" for i in range(2)}
    hf_keys.add("esm2.embeddings.position_embeddings.weight")
    ours = {k for k in released_state_dict(random_dynamics_model()) if k.startswith("esm2.")}
    assert ours == hf_keys


def test_missing_parameters_are_named(tmp_path) -> None:
    dropped = ("res_pred_nn.4.bias", "esm2.encoder.layer.1.attention.self.key.weight")
    directory = write_released_checkpoint(tmp_path / "ck", drop_keys=dropped)
    with pytest.raises(CheckpointError) as info:
        load_model(directory)
    for key in dropped:
        assert key in str(info.value)
    assert "missing learned parameters (2)" in str(info.value)


def test_unexpected_keys_are_named_but_known_unused_ones_ignored(tmp_path) -> None:
    ok = write_released_checkpoint(tmp_path / "ok",
                                   extra_keys={"esm2.embeddings.position_ids": torch.arange(1026)[None]})
    load_model(ok)
    bad = write_released_checkpoint(tmp_path / "bad", extra_keys={"pair_extra_linear.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): pair_extra_linear.weight"):
        load_model(bad)
    # pooler / contact head are unused: their absence is tolerated
    lean = write_released_checkpoint(
        tmp_path / "lean", drop_keys=("esm2.pooler.dense.weight", "esm2.pooler.dense.bias")
    )
    pooler = load_model(lean).esm2.pooler.dense
    assert torch.isfinite(pooler.weight).all() and torch.all(pooler.bias == 0)  # defined, not uninitialised memory


def test_wrong_rotary_frequencies_warn(tmp_path) -> None:
    wrong = {"esm2.encoder.layer.0.attention.self.rotary_embeddings.inv_freq": torch.ones(4)}
    directory = write_released_checkpoint(tmp_path / "ck", extra_keys=wrong)
    with pytest.warns(UserWarning, match="rotary frequencies"):
        load_model(directory)
    heads = {"esm2.encoder.layer.0.attention.self.rotary_embeddings.inv_freq": torch.ones(8)}
    with pytest.raises(CheckpointError, match="attention heads differs"):
        load_model(write_released_checkpoint(tmp_path / "ck2", extra_keys=heads))


def test_save_pretrained_round_trips_exactly(tmp_path) -> None:
    model = random_dynamics_model("tiny", "seqdance", seed=11)
    model.save_pretrained(tmp_path / "saved")
    loaded = DynamicsModel.from_pretrained(tmp_path / "saved")
    assert loaded.model_select == "seqdance" and loaded.encoder_config == model.encoder_config
    original, again = model.state_dict(), loaded.state_dict()
    assert original.keys() == again.keys()
    for key in original:
        assert torch.equal(original[key], again[key]), key
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["esm2_select"] == "custom" and config["encoder"]["num_layers"] == 2
    assert not list((tmp_path / "saved").glob("*.tmp"))
    # the saved file loads into the reference formulation (legacy buffers present) and matches it
    ids, mask = _batch()
    _assert_matches_reference(loaded, tmp_path / "saved", ids, mask)
    # saving again over the same directory replaces the files
    loaded.save_pretrained(tmp_path / "saved")
    assert load_model(tmp_path / "saved").model_select == "seqdance"


@pytest.mark.parametrize("wrap_key", [None, "model_state_dict"])
def test_training_checkpoint_with_ddp_prefix(tmp_path, wrap_key) -> None:
    path = write_update_checkpoint(tmp_path / "update_1000.pt", "tiny", "seqdance", seed=3, wrap_key=wrap_key)
    raw = torch.load(path, weights_only=True)
    assert any(k.startswith("module.") for k in (raw[wrap_key] if wrap_key else raw))
    with pytest.raises(ValueError, match="model_select"):
        load_model(path)
    model = load_model(path, model_select="seqdance")
    assert model.encoder_config.preset_name == "tiny"  # inferred from the shapes
    expected = random_dynamics_model("tiny", "seqdance", seed=3).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    lean = write_update_checkpoint(tmp_path / "update_2.pt", "tiny", "esmdance", legacy_keys=False, prefix="")
    assert load_model(lean, model_select="esmdance", encoder="tiny").freeze_encoder
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(lean, model_select="esmdance",
                   encoder={**ENCODER_PRESETS["tiny"].to_dict(), "intermediate_size": 96})


def test_build_esmdance_from_esm2_checkpoint(tmp_path) -> None:
    from transformers import EsmForMaskedLM

    directory = write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=5)
    model = build_esmdance_from_esm2(directory)
    assert model.model_select == "esmdance" and model.freeze_encoder
    assert not any(p.requires_grad for p in model.esm2.parameters())
    for module in model.heads():
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear):
                assert torch.all(sub.bias == 0)
    hf = EsmForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()
    ids, mask = _batch()
    with torch.no_grad():
        ours = model(ids, mask, pairs=False, return_embeddings=True).embeddings
        theirs = hf.esm(input_ids=ids, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    torch.testing.assert_close(ours[valid], theirs[valid], atol=1e-5, rtol=0)
    with pytest.raises(CheckpointError, match="build_esmdance_from_esm2"):
        load_model(directory)


@pytest.mark.parametrize("include_decoder", [False, True])
def test_esm2_masked_lm_matches_transformers(tmp_path, include_decoder) -> None:
    from transformers import EsmForMaskedLM

    directory = write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=2, include_decoder=include_decoder)
    ours = load_esm2_masked_lm(directory)
    hf = EsmForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()
    ids, mask = _batch()
    with torch.no_grad():
        logits = ours(ids, mask)
        expected = hf(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (3, ids.shape[1], 33)
    valid = mask.bool()
    torch.testing.assert_close(logits[valid], expected[valid], atol=1e-5, rtol=0)


def test_esm2_masked_lm_save_round_trip_and_untied_decoder(tmp_path) -> None:
    from transformers import EsmForMaskedLM

    torch.manual_seed(0)
    model = EsmMaskedLM("tiny").eval()
    model.save_pretrained(tmp_path / "mlm")
    again = load_esm2_masked_lm(tmp_path / "mlm")
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    hf = EsmForMaskedLM.from_pretrained(tmp_path / "mlm", attn_implementation="eager").eval()
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, mask)[mask.bool()], hf(input_ids=ids, attention_mask=mask).logits[mask.bool()],
            atol=1e-5, rtol=0,
        )
    from safetensors.torch import save_file

    state = load_file(tmp_path / "mlm" / "model.safetensors")
    state["lm_head.decoder.weight"] = torch.zeros_like(state["esm.embeddings.word_embeddings.weight"])
    save_file(state, str(tmp_path / "mlm" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not tied"):
        load_esm2_masked_lm(tmp_path / "mlm")


def test_unreachable_repo_offline_gives_clear_message(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelSourceError) as info:
        seqdance.load_model("ChaoHou/ESMDance")
    message = str(info.value)
    assert "ChaoHou/ESMDance" in message and "HF_HUB_OFFLINE is set" in message
    # Python's words (a command line names its own options: tests/test_cli_vocabulary.py)
    assert "--" not in message and "model_select='esmdance'" in message
    assert "update_N.pt" in message and "Zenodo" in message
    assert "HF_HUB_OFFLINE=1" not in message  # never tell a user who set it to set it
    with pytest.raises(ModelSourceError, match="facebook/esm2_t6_8M_UR50D"):
        load_esm2_masked_lm("facebook/esm2_t6_8M_UR50D")
    with pytest.raises(ModelSourceError, match="facebook/esm2_t30_150M_UR50D"):  # preset name -> hub id
        build_esmdance_from_esm2("150M")


def test_local_path_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nowhere" / "update_5.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_model(tmp_path / "empty")


def test_device_dtype_and_overrides(tmp_path) -> None:
    directory = write_released_checkpoint(tmp_path / "ck", "tiny", "esmdance", seed=1)
    model64 = load_model(directory, dtype="float64", device="cpu")
    assert all(p.dtype == torch.float64 for p in model64.parameters())
    model = load_model(directory)
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model64(ids, mask).pair.float(), model(ids, mask).pair, atol=1e-5, rtol=0)
    assert load_model(directory, model_select="seqdance").model_select == "seqdance"
    with pytest.raises(CheckpointError, match="differs from the architecture recorded"):
        load_model(directory, encoder="8M")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(directory, dtype="float13")


def test_pytorch_bin_layout_and_compile_prefix(tmp_path) -> None:
    directory = write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=4)
    state = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    expected = write_esm2_mlm_checkpoint(tmp_path / "again", "tiny", seed=4)
    a, b = load_esm2_masked_lm(directory), load_esm2_masked_lm(expected)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    path = write_update_checkpoint(tmp_path / "update_7.pt", "tiny", "esmdance", prefix="module._orig_mod.")
    assert load_model(path, model_select="esmdance").model_select == "esmdance"
    # the package's name dispatches fine-tuned model folders first, then delegates here (docs/architecture.md)
    from seqdance.finetuning import files as finetuned_files

    assert seqdance.load_model is finetuned_files.load_model
    assert seqdance.load_model(path, model_select="esmdance").model_select == "esmdance"


def test_seqdance_training_checkpoint_records_its_architecture(tmp_path) -> None:
    """A checkpoint like seqdance.train writes: model state beside optimiser, numpy RNG states and config."""
    import random

    import numpy as np

    model = random_dynamics_model("tiny", "esmdance", seed=8)
    state = {
        "model": model.state_dict(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98)}]},
        "rng": [{"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}],  # noqa: NPY002
        "config": {"model_select": "esmdance", "encoder": "tiny", "dropout": 0.1},
        "update": 12,
    }
    torch.save(state, tmp_path / "update_00000012.pt")
    loaded = load_model(tmp_path / "update_00000012.pt")
    assert loaded.model_select == "esmdance" and loaded.encoder_config.preset_name == "tiny"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    import datetime  # arbitrary pickled objects are refused (weights-only loading)

    torch.save({"model": model.state_dict(), "extra": datetime.date(2024, 1, 1)}, tmp_path / "update_1.pt")
    with pytest.raises(UnsafeFileError, match=r"refused: the file holds Python objects \(datetime.date\)"):
        load_model(tmp_path / "update_1.pt", model_select="esmdance")


def test_from_pretrained_builds_the_calling_class(tmp_path):
    class TaggedDynamics(DynamicsModel):
        pass

    class TaggedLM(EsmMaskedLM):
        pass

    directory = write_released_checkpoint(tmp_path / "released", "tiny", "seqdance", seed=4)
    model = TaggedDynamics.from_pretrained(str(directory))
    assert type(model) is TaggedDynamics
    reference = load_model(str(directory))
    assert type(reference) is DynamicsModel
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    lm = TaggedLM.from_pretrained(str(write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=2)))
    assert type(lm) is TaggedLM


def _save_with_installed_transformers(directory, *, seed: int):
    """A tiny random ``EsmForMaskedLM`` written by the installed transformers' own ``save_pretrained`` (5.x writes
    LayerNorm ``gamma``/``beta`` and one shared ``encoder.layer.*.attention.self.rotary_embeddings.inv_freq``)."""
    from _checkpoints import randomize_parameters_
    from transformers import EsmConfig, EsmForMaskedLM

    hf = EsmForMaskedLM(EsmConfig(**ENCODER_PRESETS["tiny"].to_hf_dict()))
    randomize_parameters_(hf, seed)
    hf.save_pretrained(directory)
    return EsmForMaskedLM.from_pretrained(directory, attn_implementation="eager").eval()


def test_esm2_folder_saved_by_installed_transformers_loads(tmp_path) -> None:
    import transformers

    directory = tmp_path / "esm2_hf"
    hf = _save_with_installed_transformers(directory, seed=7)
    keys = set(load_file(directory / "model.safetensors"))
    if int(transformers.__version__.split(".")[0]) >= 5:  # the layout this test exists for
        assert "esm.encoder.layer.0.attention.LayerNorm.gamma" in keys
        assert any(k.endswith("rotary_embeddings.inv_freq") for k in keys)
        assert not any(k.endswith("LayerNorm.weight") and ".layer." in k for k in keys)
    ids, mask = _batch()
    valid = mask.bool()
    ours = load_esm2_masked_lm(directory)
    with torch.no_grad():
        logits = ours(ids, mask)
        expected = hf(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(logits[valid], expected.logits[valid], atol=1e-5, rtol=0)

    model = build_esmdance_from_esm2(directory)
    with torch.no_grad():
        embeddings = model(ids, mask, pairs=False, return_embeddings=True).embeddings
        theirs = hf.esm(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(embeddings[valid], theirs[valid], atol=1e-5, rtol=0)


def test_both_names_of_one_layer_norm_parameter_are_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    directory = write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=2)
    state = load_file(directory / "model.safetensors")
    state["esm.encoder.layer.0.LayerNorm.gamma"] = state["esm.encoder.layer.0.LayerNorm.weight"].clone()
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"LayerNorm\.gamma.*ambiguous"):
        load_esm2_masked_lm(directory)


def test_rotary_base_other_than_esm2s_is_refused(tmp_path) -> None:
    directory = write_esm2_mlm_checkpoint(tmp_path / "esm2", "tiny", seed=2)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "rope_theta": 500000.0}))
    with pytest.raises(ValueError, match="rope_theta=500000"):
        load_esm2_masked_lm(directory)
