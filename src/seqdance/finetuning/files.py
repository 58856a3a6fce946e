"""A fine-tuned model's folder, and loading it wherever a model is taken (``seqdance.load_model``, ``--model``).

Layout of ``RUN/model/``::

    finetune.json          what the model is: task, target, classes, target scaling, head shape, method, pooling,
                           dynamics inputs, and its base (source, kind, fingerprint)
    head.safetensors       the task head
    adapter.safetensors    LoRA adapters (method lora, not merged): applied to the base named in finetune.json
    base/                  the whole base model with its fine-tuned encoder (method full, or lora with merge):
                           a dynamics model in the released layout, a plain ESM2 in the facebook/esm2_* layout

A base (or dynamics model) kept by reference is loaded from its recorded source and must still have the recorded
fingerprint: fine-tuned weights are never applied to a base that changed since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from seqdance.errors import InputError
from seqdance.finetuning.model import FinetunedModel, TaskHead, add_lora, is_dynamics_model, load_lora_state
from seqdance.io_utils import atomic_path

FORMAT = "seqdance-finetune"
VERSION = 1
INFO_NAME = "finetune.json"
HEAD_NAME = "head.safetensors"
ADAPTER_NAME = "adapter.safetensors"
BASE_DIR = "base"


def is_finetuned_dir(source: str | os.PathLike[str]) -> bool:
    path = Path(os.fspath(source)).expanduser()
    return path.is_dir() and (path / INFO_NAME).is_file()


def describe_source(source: str | os.PathLike[str]) -> str:
    """How a model is referred to later: a local path made absolute, a hub id as given."""
    path = Path(os.fspath(source)).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def load_base(source: str, model_select: str | None = None, device: str | torch.device | None = None
              ) -> torch.nn.Module:
    """A SeqDance/ESMDance model or a plain ESM2 (facebook/esm2_* id or layout, a preset name)."""
    from seqdance.analysis.models import load_analysis_model

    return load_analysis_model(str(source), model_select=model_select, device=device)


def save_finetuned(model: FinetunedModel, directory: str | os.PathLike[str], *, merge: bool = False) -> Path:
    """Write ``model`` (with ``model.info`` describing it) as a fine-tuned model folder; see the module docstring."""
    from safetensors.torch import save_file

    from seqdance.finetuning.model import lora_state, merge_lora

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    info = dict(model.info)
    method = info["method"]
    if method == "lora" and merge:
        merge_lora(model.encoder)
        info["merged"] = True
    if method == "full" or (method == "lora" and merge):
        model.base.save_pretrained(out / BASE_DIR)
        info["base_saved"] = True
    else:
        info["base_saved"] = False
        if method == "lora":
            with atomic_path(out / ADAPTER_NAME) as tmp:
                save_file(lora_state(model.encoder), str(tmp))
    head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    with atomic_path(out / HEAD_NAME) as tmp:
        save_file(head, str(tmp))
    with atomic_path(out / INFO_NAME) as tmp:
        tmp.write_text(json.dumps({"format": FORMAT, "version": VERSION, **info}, indent=2) + "\n")
    model.info = info
    return out


def _referenced(ref: dict[str, Any], what: str, device) -> torch.nn.Module:
    from seqdance.inference.fingerprint import module_fingerprint

    module = load_base(ref["source"], ref.get("model_select"), device)
    if ref.get("fingerprint") and module_fingerprint(module) != ref["fingerprint"]:
        raise InputError(f"the {what} {ref['source']} is not the one this model was fine-tuned from (its weights "
                         "changed: fingerprint differs); restore that model or fine-tune again")
    return module


def load_finetuned(directory: str | os.PathLike[str], *, device: str | torch.device | None = None) -> FinetunedModel:
    """Load a fine-tuned model folder (in eval mode)."""
    from seqdance.model.files import read_json, read_safetensors

    path = Path(directory)
    info = read_json(path / INFO_NAME)
    if info.get("format") != FORMAT:
        raise InputError(f"{path / INFO_NAME} is not a seqdance fine-tuned model description")
    if int(info.get("version", 0)) > VERSION:
        raise InputError(f"{path}: fine-tuned model format {info['version']} is newer than this seqdance reads")
    base_ref = info["base"]
    if info.get("base_saved"):
        base = load_base(str(path / BASE_DIR), base_ref.get("model_select"), device)
    else:
        base = _referenced(base_ref, "base model", device)
    if info["method"] == "lora" and not info.get("merged"):
        lora = info["lora"]
        from seqdance.finetuning.model import encoder_of

        add_lora(encoder_of(base), rank=lora["rank"], alpha=lora["alpha"], dropout=lora["dropout"],
                 targets=lora["targets"])
        load_lora_state(encoder_of(base), read_safetensors(path / ADAPTER_NAME))
    dyn = None
    dyn_ref = info.get("dynamics")
    if dyn_ref is not None:
        same = (dyn_ref["source"] == base_ref["source"] and dyn_ref.get("fingerprint") == base_ref.get("fingerprint")
                and info["method"] == "head")
        dyn = base if same else _referenced(dyn_ref, "dynamics model", device)
        if not is_dynamics_model(dyn):
            raise InputError(f"{dyn_ref['source']} is not a dynamics model")
        dyn.eval().requires_grad_(False)
    h = info["head"]
    head = TaskHead(h["hidden_size"], h["n_dynamics"], h["n_outputs"], task=info["task"], pooling=h["pooling"],
                    hidden=h["hidden"], dropout=h["dropout"])
    state = read_safetensors(path / HEAD_NAME)
    missing, unexpected = head.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{path / HEAD_NAME} does not fit the head described in {INFO_NAME} (missing {missing}, "
                         f"unexpected {unexpected})")
    model = FinetunedModel(base, head, dynamics_source=dyn)
    model.info = info
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model.eval()


def load_model(source: str | os.PathLike[str] = "ChaoHou/ESMDance", **kwargs: Any) -> torch.nn.Module:
    """``seqdance.load_model``: a fine-tuned model folder (``RUN/model``) or anything
    :func:`seqdance.model.load_model` reads."""
    if is_finetuned_dir(source):
        return load_finetuned(source, device=kwargs.get("device"))
    from seqdance.model.loading import load_model as load_dynamics_model

    return load_dynamics_model(source, **kwargs)
