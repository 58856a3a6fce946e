"""Loading and saving SeqDance/ESMDance models and ESM2 weights (local files or the Hugging Face hub).

Sources understood by :func:`load_model`:

* a Hugging Face repo id (``ChaoHou/ESMDance``, ``ChaoHou/SeqDance``) or a local directory in the released layout:
  ``config.json`` written by PyTorchModelHubMixin (``{"esm2_select": "model_35M", "model_select": "esmdance"}``)
  and ``model.safetensors`` with keys ``esm2.*``, ``res_pred_nn.*``, ``res_transform_nn.*``,
  ``pair_middle_linear.*``, ``pair_pred_linear.*``; our own :func:`save_dynamics_model` writes the same layout
  (plus an ``encoder`` entry for architectures that are not ESM2 presets);
* a reference training checkpoint ``update_*.pt`` (a state dict, possibly with a DDP ``module.`` prefix or
  wrapped in a dict), whose architecture the caller names; seqdance's own training checkpoints record it.

Released files were written by transformers 4.48. Their per-layer rotary ``inv_freq`` buffers are checked
against the computed frequencies and dropped; ``embeddings.position_embeddings.weight`` (unused by rotary
models) and ``embeddings.position_ids`` are ignored; pooler and contact-head weights are kept (unused). Every
other mismatch is an error naming the keys. Network access happens only inside these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from seqdance.errors import SeqdanceError
from seqdance.io_utils import atomic_path
from seqdance.model.config import (
    ENCODER_PRESETS,
    ESM2_HUB_IDS,
    EncoderConfig,
    esm2_select_name,
    resolve_encoder_config,
)
from seqdance.model.dynamics import MODEL_SELECTS, DynamicsModel
from seqdance.model.encoder import rotary_inv_freq, seqdance_init_
from seqdance.model.esm_lm import EsmMaskedLM

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
DEFAULT_SOURCE = "ChaoHou/ESMDance"
DEFAULT_ESM2_SOURCE = "facebook/esm2_t12_35M_UR50D"

#: Encoder keys (relative to the encoder prefix) that older transformers saved and nothing uses.
_UNUSED_ENCODER_KEYS = re.compile(r"^embeddings\.(position_embeddings\.weight|position_ids)$")
_INV_FREQ_KEY = re.compile(r"^(encoder\.layer\.\d+\.attention\.self\.)?rotary_embeddings\.inv_freq$")
#: Encoder parameters that no forward pass uses; absent ones keep their initial values.
_OPTIONAL_ENCODER_KEYS = re.compile(r"^(pooler|contact_head)\.")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_STATE_DICT_ENTRIES = ("model_state_dict", "state_dict", "model", "module", "net")


class CheckpointError(SeqdanceError, ValueError):
    """A checkpoint does not fit the model; the message names the keys."""


class ModelSourceError(SeqdanceError, OSError):
    """Model files could not be obtained (hub unreachable, repository or file absent)."""


# --- locating files ----------------------------------------------------------------------------------------


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
        or source.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    )


def _hub_file(repo_id: str, filename: str, revision: str | None, *, required: bool = True) -> Path | None:
    """Download (or take from the cache) one file of a hub repository, with errors that say what to do."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    local_hint = (
        "To work offline, download the files once with network access and set HF_HUB_OFFLINE=1 (the Hugging "
        "Face cache is then used), or pass the path of a local directory holding config.json and the weights."
    )
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        reason = "HF_HUB_OFFLINE is set" if offline else "huggingface.co could not be reached"
        raise ModelSourceError(
            f"could not get {filename} of the Hugging Face model {where}: {reason} and the file is not in the "
            f"local cache. {local_hint}"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelSourceError(f"the Hugging Face model {repo_id} has no revision {revision!r}") from exc
    except RepositoryNotFoundError as exc:
        raise ModelSourceError(
            f"Hugging Face repository {repo_id!r} was not found (or is private/gated and needs a token); "
            "check the name, or pass a local directory path"
        ) from exc
    except EntryNotFoundError as exc:
        if not required:
            return None
        raise ModelSourceError(f"the Hugging Face model {where} has no file {filename}") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelSourceError(
            f"could not download {filename} of the Hugging Face model {where}: {exc}. {local_hint}"
        ) from exc


def _resolve_source(
    source: str | os.PathLike[str], revision: str | None, *, kind: str
) -> tuple[str, Path | None, Path | None]:
    """(description, config path | None, weights path | None) for a local dir, a local file or a repo id."""
    text = os.fspath(source)
    if not text.strip():
        raise ValueError(f"empty {kind} source: give a Hugging Face repo id or a local path")
    path = Path(text).expanduser()
    if path.is_dir():
        config = path / CONFIG_NAME
        for name in (SAFETENSORS_NAME, PYTORCH_NAME):
            if (path / name).is_file():
                return str(path), (config if config.is_file() else None), path / name
        raise FileNotFoundError(f"{path}: no {SAFETENSORS_NAME} or {PYTORCH_NAME} in this {kind} directory")
    if path.is_file():
        return str(path), None, path
    if _looks_like_path(text):
        raise FileNotFoundError(f"{kind} not found: {text}")
    config = _hub_file(text, CONFIG_NAME, revision)
    weights = _hub_file(text, SAFETENSORS_NAME, revision, required=False)
    if weights is None:
        weights = _hub_file(text, PYTORCH_NAME, revision)
    return f"hf://{text}", config, weights


# --- reading weights ---------------------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _numpy_safe_globals() -> list[Any]:
    """numpy types that training checkpoints hold (RNG states) and ``weights_only`` loading may accept."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors, plain containers and numpy arrays (no arbitrary code)."""
    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        with safe(_numpy_safe_globals()) if safe is not None else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint of tensors and plain data ({str(exc).splitlines()[0]})"
        ) from exc


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Tensors of a ``.safetensors`` file or a ``torch.save`` checkpoint (unwrapped, DDP/compile prefixes
    removed), and the ``config`` dict stored beside them in a wrapping dict (seqdance training checkpoints)."""
    path = Path(path)
    meta = None
    if path.suffix == ".safetensors":
        state: Any = load_file(str(path))
    else:
        state = _torch_load(path)
        if not _is_state_dict(state):
            inner = None
            if isinstance(state, Mapping):
                inner = next((state[k] for k in _STATE_DICT_ENTRIES if _is_state_dict(state.get(k))), None)
                meta = state.get("config") if isinstance(state.get("config"), Mapping) else None
            if inner is None:
                top = list(state)[:10] if isinstance(state, Mapping) else type(state).__name__
                raise CheckpointError(
                    f"{path}: no state dict found (top level: {top}); expected a dict of tensors or one under "
                    f"{', '.join(_STATE_DICT_ENTRIES)}"
                )
            state = inner
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = tensor
    return out, (dict(meta) if meta is not None else None)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of :func:`read_checkpoint`."""
    return read_checkpoint(path)[0]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable config.json ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: config.json must hold a JSON object")
    return data


# --- mapping state dicts onto modules ------------------------------------------------------------------------


def _check_inv_freq(key: str, tensor: torch.Tensor, config: EncoderConfig, source: str) -> None:
    expected = rotary_inv_freq(config.head_dim)
    if tensor.shape != expected.shape:
        raise CheckpointError(
            f"{source}: {key} has {tensor.numel()} rotary frequencies, the encoder expects {expected.numel()} "
            f"(head size {config.head_dim}); the checkpoint's number of attention heads differs"
        )
    tol = 1e-3 if tensor.dtype in (torch.float16, torch.bfloat16) else 1e-6
    if not torch.allclose(tensor.float(), expected, rtol=tol, atol=0):
        warnings.warn(
            f"{source}: {key} differs from the standard ESM2 rotary frequencies (max |Δ| "
            f"{float((tensor.float() - expected).abs().max()):.3g}); the standard ones are used",
            stacklevel=3,
        )


def load_into(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    encoder_prefix: str,
    config: EncoderConfig,
    ignore: re.Pattern[str] | None = None,
) -> None:
    """Load ``state`` (our key names) into ``module``, failing loudly on anything missing or unexpected.

    Legacy encoder keys under ``encoder_prefix`` are checked (inv_freq) or ignored (position embeddings);
    optional encoder parameters (pooler, contact head) are Xavier-initialised when absent; ``ignore`` matches
    further keys to skip. The loaded tensors become the module's parameters (cast to their dtype).
    """
    expected = module.state_dict()
    usable: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        rel = key[len(encoder_prefix):] if key.startswith(encoder_prefix) else None
        if key in expected:
            usable[key] = tensor
        elif rel is not None and _INV_FREQ_KEY.match(rel):
            _check_inv_freq(key, tensor, config, source)
        elif (rel is not None and _UNUSED_ENCODER_KEYS.match(rel)) or (ignore is not None and ignore.match(key)):
            continue
        else:
            unexpected.append(key)
    missing = [
        k for k in expected
        if k not in usable and not (k.startswith(encoder_prefix) and _OPTIONAL_ENCODER_KEYS.match(k[len(encoder_prefix):]))
    ]
    wrong_shape = [
        f"{k} {tuple(usable[k].shape)} (model: {tuple(expected[k].shape)})"
        for k in usable if usable[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing learned parameters ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches (the encoder architecture differs?): {', '.join(wrong_shape)}")
    if problems:
        hint = ""
        if missing and unexpected and any(k.startswith("esm.") for k in unexpected) and encoder_prefix == "esm2.":
            hint = " (this looks like an ESM2 language-model checkpoint: use build_esmdance_from_esm2)"
        raise CheckpointError(f"{source} does not fit the model{hint}: " + "; ".join(problems))
    # assign: the loaded tensors become the parameters (no second copy of the weights in memory)
    usable = {k: v.to(expected[k].dtype).contiguous() for k, v in usable.items()}
    module.load_state_dict(usable, strict=False, assign=True)
    _initialise_absent(module, set(usable))


def _without_init(factory: Callable[[], ModuleT]) -> ModuleT:
    """Build a module with uninitialised CPU storage (its weights are about to be loaded; skips the init cost)."""
    with torch.device("meta"):
        module = factory()
    return module.to_empty(device="cpu")


def _initialise_absent(module: torch.nn.Module, loaded: set[str]) -> None:
    """Give optional submodules that the checkpoint lacked (pooler, contact head) defined values."""
    for name, sub in module.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in sub.named_parameters(recurse=False)]
        if own and not all(k in loaded for k in own):
            seqdance_init_(sub, dropout=None)


def infer_encoder_config(state: Mapping[str, torch.Tensor], prefix: str = "esm2.") -> EncoderConfig:
    """The encoder architecture of a state dict (layers, sizes; heads from rotary frequencies or a preset)."""
    try:
        vocab, hidden = state[prefix + "embeddings.word_embeddings.weight"].shape
        intermediate = state[prefix + "encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"cannot infer the encoder architecture: no key {exc.args[0]!r}") from None
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", k))}
    layers = max(layer_ids) + 1
    inv = next((v for k, v in state.items() if k.startswith(prefix) and k.endswith("rotary_embeddings.inv_freq")), None)
    if inv is not None:
        return EncoderConfig(
            num_layers=layers, hidden_size=hidden, num_heads=hidden // (2 * inv.numel()),
            intermediate_size=intermediate, vocab_size=vocab,
        )
    for preset in ENCODER_PRESETS.values():
        if (preset.num_layers, preset.hidden_size, preset.intermediate_size, preset.vocab_size) == (
            layers, hidden, intermediate, vocab
        ):
            return preset
    raise CheckpointError(
        f"cannot infer the number of attention heads of a {layers}-layer, {hidden}-wide encoder that matches no "
        "preset; pass encoder= (a preset name, dict or EncoderConfig)"
    )


# --- public loaders -------------------------------------------------------------------------------------------


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'")
    return value


def _finish(model: torch.nn.Module, device: str | torch.device | None, dtype: torch.dtype | str | None) -> Any:
    model = model.to(device=device, dtype=_as_dtype(dtype)) if (device or dtype) else model
    return model.eval()


def _dynamics_architecture(
    config: dict[str, Any] | None,
    model_select: str | None,
    encoder: str | Mapping[str, Any] | EncoderConfig | None,
    state: Mapping[str, torch.Tensor],
    source: str,
) -> tuple[EncoderConfig, str]:
    if config is not None and ("model_type" in config or "num_hidden_layers" in config):
        raise CheckpointError(
            f"{source} is an ESM2 language-model checkpoint, not a SeqDance/ESMDance model; use "
            "seqdance.model.build_esmdance_from_esm2 (ESMDance with fresh heads) or load_esm2_masked_lm"
        )
    if config is not None:
        saved_select = config.get("model_select")
        if model_select is None:
            model_select = saved_select
        if "encoder" in config:
            saved_encoder = resolve_encoder_config(config["encoder"])
        elif "esm2_select" in config:
            saved_encoder = resolve_encoder_config(config["esm2_select"])
        else:
            saved_encoder = None
        if saved_encoder is not None and encoder is not None:
            wanted = resolve_encoder_config(encoder)
            if wanted.with_dropout(0, 0) != saved_encoder.with_dropout(0, 0):
                raise CheckpointError(
                    f"{source}: encoder={encoder!r} differs from the architecture recorded with it ({saved_encoder})"
                )
        encoder_config = saved_encoder if saved_encoder is not None else None
    else:
        encoder_config = None
    if encoder_config is None:
        encoder_config = resolve_encoder_config(encoder) if encoder is not None else infer_encoder_config(state)
    if model_select is None:
        raise ValueError(
            f"{source} does not record which model it is: pass model_select='esmdance' (frozen pretrained encoder) "
            "or 'seqdance' (encoder trained from scratch)"
        )
    if model_select not in MODEL_SELECTS:
        raise ValueError(f"model_select must be one of {MODEL_SELECTS}, got {model_select!r}")
    return encoder_config, model_select


def load_model(
    source: str | os.PathLike[str] = DEFAULT_SOURCE,
    *,
    model_select: str | None = None,
    encoder: str | Mapping[str, Any] | EncoderConfig | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> DynamicsModel:
    """Load a SeqDance/ESMDance model (in eval mode).

    ``source``: a Hugging Face repo id (default ``ChaoHou/ESMDance``), a local directory in the released layout
    (also what :meth:`DynamicsModel.save_pretrained` writes), or a training checkpoint file (``update_*.pt``;
    for the reference's, name the model with ``model_select``, and ``encoder`` unless its shapes match a
    preset; seqdance's own record both). ``model_select`` overrides the recorded one (e.g. to fine-tune the
    released ESMDance encoder as SeqDance would).
    """
    description, config_path, weights_path = _resolve_source(source, revision, kind="model")
    assert weights_path is not None
    config = _read_json(config_path) if config_path is not None else None
    state, meta = read_checkpoint(weights_path)
    if config is None and meta is not None and meta.get("model_select") in MODEL_SELECTS:
        config = {"model_select": meta["model_select"]}  # a seqdance training checkpoint records its model
        if meta.get("encoder") is not None:
            config["encoder"] = meta["encoder"]
    encoder_config, select = _dynamics_architecture(config, model_select, encoder, state, description)
    model = _without_init(lambda: DynamicsModel(encoder_config, select))  # type: ignore[arg-type]
    load_into(model, state, source=description, encoder_prefix="esm2.", config=encoder_config)
    return _finish(model, device, dtype)


def _esm2_source(
    source: str | os.PathLike[str], revision: str | None
) -> tuple[str, EncoderConfig, dict[str, torch.Tensor]]:
    text = os.fspath(source)
    if not Path(text).expanduser().exists():  # a preset or model name ("650M", "esm2_t33_650M_UR50D") -> hub id
        try:
            preset = resolve_encoder_config(text).preset_name
        except ValueError:
            preset = None
        source = ESM2_HUB_IDS.get(preset or "", text)
    description, config_path, weights_path = _resolve_source(source, revision, kind="ESM2 checkpoint")
    assert weights_path is not None
    if config_path is None:
        raise FileNotFoundError(f"{description}: an ESM2 checkpoint needs its Hugging Face config.json beside the weights")
    config = EncoderConfig.from_hf_dict(_read_json(config_path))
    state = read_state_dict(weights_path)
    if not any(k.startswith("esm.") for k in state):  # a bare EsmModel checkpoint
        state = {"esm." + k: v for k, v in state.items()}
    return description, config, state


def build_esmdance_from_esm2(
    source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
    *,
    dropout: float = 0.1,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> DynamicsModel:
    """ESMDance for training: pretrained ESM2 weights (``facebook/esm2_*`` layout) frozen, fresh heads.

    ``source``: a hub id, a preset name ("35M", "650M" ...) or a local directory in the facebook layout.
    The language-model head of the checkpoint is ignored. Returned in eval mode (call ``.train()``).
    """
    description, config, state = _esm2_source(source, revision)
    config = config.with_dropout(0.0, 0.0)
    model = DynamicsModel(config, "esmdance", dropout=dropout)
    foreign = [k for k in state if not k.startswith(("esm.", "lm_head."))]
    if foreign:
        raise CheckpointError(f"{description}: unexpected keys for an ESM2 checkpoint: {', '.join(foreign)}")
    encoder_state = {k[len("esm."):]: v for k, v in state.items() if k.startswith("esm.")}
    load_into(model.esm2, encoder_state, source=description, encoder_prefix="", config=config)
    return _finish(model, device, dtype)


def load_esm2_masked_lm(
    source: str | os.PathLike[str] = DEFAULT_ESM2_SOURCE,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> EsmMaskedLM:
    """ESM2 with its language-model head, from a ``facebook/esm2_*`` repo id (or a preset name such as "650M")
    or a local directory in that layout (HF ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``)."""
    description, config, state = _esm2_source(source, revision)
    model = _without_init(lambda: EsmMaskedLM(config))
    decoder = state.pop("lm_head.decoder.weight", None)
    if decoder is not None:
        embeddings = state.get("esm.embeddings.word_embeddings.weight")
        if embeddings is None or decoder.shape != embeddings.shape or not torch.equal(decoder, embeddings):
            raise CheckpointError(
                f"{description}: lm_head.decoder.weight is not tied to the word embeddings, as ESM2's must be"
            )
    load_into(
        model, state, source=description, encoder_prefix="esm.", config=config,
        ignore=re.compile(r"^esm\.pooler\."),
    )
    return _finish(model, device, dtype)


# --- saving ------------------------------------------------------------------------------------------------


def legacy_encoder_tensors(prefix: str, config: EncoderConfig, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Buffers transformers 4.48 kept in ESM state dicts: per-layer rotary ``inv_freq`` (float32) and the unused
    absolute ``position_embeddings`` (written as zeros), so the reference code can load our files strictly."""
    out = {
        f"{prefix}encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq": rotary_inv_freq(config.head_dim)
        for i in range(config.num_layers)
    }
    out[f"{prefix}embeddings.position_embeddings.weight"] = torch.zeros(
        config.max_position_embeddings, config.hidden_size, dtype=dtype
    )
    return out


def _write_checkpoint(directory: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / SAFETENSORS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_dynamics_model(model: DynamicsModel, directory: str | os.PathLike[str]) -> None:
    """Write ``config.json`` + ``model.safetensors`` in the released layout (each file replaced atomically).

    config.json is the reference's ``{"esm2_select": "model_35M", "model_select": ...}``; for an encoder that
    is no ESM2 preset, ``esm2_select`` is "custom" and ``encoder`` holds its full configuration.
    """
    config = model.encoder_config
    select_name = esm2_select_name(config)
    meta: dict[str, Any] = {"esm2_select": select_name or "custom", "model_select": model.model_select}
    if select_name is None:
        meta["encoder"] = config.with_dropout(0.0, 0.0).to_dict()
    state = _cpu_state(model)
    state.update(legacy_encoder_tensors("esm2.", config, model.esm2.embeddings.word_embeddings.weight.dtype))
    _write_checkpoint(Path(directory), meta, state)


def save_esm2_masked_lm(model: EsmMaskedLM, directory: str | os.PathLike[str]) -> None:
    """Write the ``facebook/esm2_*`` layout (HF config.json; ``esm.*`` and ``lm_head.*``, decoder tied)."""
    config = model.encoder_config
    state = _cpu_state(model)
    state.update(legacy_encoder_tensors("esm.", config, model.esm.embeddings.word_embeddings.weight.dtype))
    _write_checkpoint(Path(directory), config.to_hf_dict(), state)
