"""Model files: finding them (local paths, the Hugging Face hub), reading them safely, fitting them to modules.

Knows checkpoint layouts but no model class: :mod:`seqdance.model.dynamics` and :mod:`seqdance.model.esm_lm`
build their modules and hand the tensors to :func:`load_into`; :mod:`seqdance.model.loading` is the public,
functional face of both. Sources understood:

* a Hugging Face repo id (``ChaoHou/ESMDance``, ``ChaoHou/SeqDance``) or a local directory in the released layout:
  ``config.json`` written by PyTorchModelHubMixin (``{"esm2_select": "model_35M", "model_select": "esmdance"}``)
  and ``model.safetensors`` with keys ``esm2.*``, ``res_pred_nn.*``, ``res_transform_nn.*``,
  ``pair_middle_linear.*``, ``pair_pred_linear.*`` (what :meth:`DynamicsModel.save_pretrained` writes too, plus an
  ``encoder`` entry for architectures that are not ESM2 presets);
* a reference training checkpoint ``update_*.pt`` (a state dict, possibly with a DDP ``module.`` prefix or
  wrapped in a dict), whose architecture the caller names; seqdance's own training checkpoints record it;
* ``facebook/esm2_*`` repositories or directories (HF ``config.json`` + ``esm.*``/``lm_head.*`` weights).

Released files were written by transformers 4.48. Their per-layer rotary ``inv_freq`` buffers are checked
against the computed frequencies and dropped (as are transformers 5's shared ``rotary_embeddings.inv_freq`` and
the ``encoder.layer.*.…inv_freq`` key its ``save_pretrained`` writes); LayerNorm parameters saved under their
legacy names ``gamma``/``beta`` (transformers 5 writes them so) are read as ``weight``/``bias``;
``embeddings.position_embeddings.weight`` (unused by rotary models) and ``embeddings.position_ids`` are ignored;
pooler and contact-head weights are kept (unused). Every other mismatch is an error naming the keys. Pickled
checkpoints load with ``weights_only=True`` (tensors, plain containers and numpy arrays only: data never runs
code). Network access happens only in :func:`resolve_source`.
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

from seqdance.errors import InputError, NonFiniteError, SeqdanceError, UnsafeFileError
from seqdance.io_utils import atomic_path
from seqdance.model.config import ENCODER_PRESETS, ESM2_HUB_IDS, EncoderConfig, resolve_encoder_config
from seqdance.model.encoder import rotary_inv_freq, seqdance_init_
from seqdance.model.hints import local_copy_hint, local_esm2_hint

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"

#: Encoder keys (relative to the encoder prefix) that older transformers saved and nothing uses.
_UNUSED_ENCODER_KEYS = re.compile(r"^embeddings\.(position_embeddings\.weight|position_ids)$")
#: Rotary frequencies: per layer (transformers 4.x), shared (5.x in memory) or under the literal ``encoder.layer.*``
#: that transformers 5's ``save_pretrained`` writes for the shared buffer.
_INV_FREQ_KEY = re.compile(r"^(encoder\.layer\.(\d+|\*)\.attention\.self\.)?rotary_embeddings\.inv_freq$")
#: LayerNorm parameters under their legacy names, as transformers 5's ``save_pretrained`` writes them.
_LEGACY_NORM_KEY = re.compile(r"(^|\.)LayerNorm\.(gamma|beta)$")
_LEGACY_NORM_NAMES = {"gamma": "weight", "beta": "bias"}
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


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (huggingface_hub's own reading of it)."""
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check()) if callable(check) else bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _cached_hub_file(repo_id: str, filename: str, revision: str | None) -> Path | None:
    """The file from the local Hugging Face cache, without touching the network (None when not cached)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, EntryNotFoundError, OSError, ValueError):
        return None


def hub_unreachable(repo_id: str, filename: str, revision: str | None) -> str | None:
    """Why the hub cannot be reached (one request, no retries, ``HF_HUB_ETAG_TIMEOUT`` seconds at most), or
    None when it answered (any HTTP status: the download then reports repository and file errors itself).

    huggingface_hub retries a failed first request five times with back-off (~25 s) when the file is not cached;
    this probe makes an unreachable hub fail at once instead.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(repo_id, filename, revision=revision)
    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None
    except Exception as exc:  # connection refused, DNS failure, timeout, proxy or SSL failure
        text = " ".join(str(exc).split()) or type(exc).__name__
        host = url.split("/")[2] if "://" in url else url
        return f"{host} could not be reached ({text})"
    return None


def hub_file(
    repo_id: str, filename: str, revision: str | None, *, required: bool = True, hint: str | None = None
) -> Path | None:
    """Download (or take from the cache) one file of a hub repository, with errors that say what to do.

    A cached file is returned even when the hub is unreachable; a file that must be downloaded from an
    unreachable hub fails within one request timeout with one line naming the local alternatives.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    hint = hint if hint is not None else local_copy_hint()
    offline = hub_offline()
    cached = _cached_hub_file(repo_id, filename, revision)
    if cached is None and not offline:
        reason = hub_unreachable(repo_id, filename, revision)
        if reason is not None:
            raise ModelSourceError(
                f"cannot download the model {where}: {reason} and it is not in the local Hugging Face cache. "
                f"{hint} (once downloaded, HF_HUB_OFFLINE=1 runs from the cache without the hub)"
            )
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except LocalEntryNotFoundError as exc:
        if offline:
            raise ModelSourceError(
                f"the model {where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it "
                f"was not downloaded. {hint} (or run once without HF_HUB_OFFLINE to download it)"
            ) from exc
        raise ModelSourceError(
            f"cannot download {filename} of the model {where}: the hub could not be reached and the file is "
            f"not in the local Hugging Face cache. {hint}"
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
            f"could not download {filename} of the Hugging Face model {where}: {' '.join(str(exc).split())}. "
            f"{hint}"
        ) from exc


def resolve_source(
    source: str | os.PathLike[str], revision: str | None, *, kind: str
) -> tuple[str, Path | None, Path | None]:
    """(description, config path | None, weights path | None) for a local dir, a local file or a repo id."""
    text = os.fspath(source)
    if not text.strip():
        raise InputError(f"empty {kind} source: give a Hugging Face repo id or a local path")
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
    hint = local_esm2_hint() if kind.startswith("ESM2") else local_copy_hint()
    config = hub_file(text, CONFIG_NAME, revision, hint=hint)
    weights = hub_file(text, SAFETENSORS_NAME, revision, required=False, hint=hint)
    if weights is None:
        weights = hub_file(text, PYTORCH_NAME, revision, hint=hint)
    return f"hf://{text}", config, weights


# --- reading weights ---------------------------------------------------------------------------------------


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _numpy_safe_globals() -> list[Any]:
    """numpy types that training checkpoints hold (RNG states) and ``weights_only`` loading may accept."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


_BLOCKED_GLOBAL = re.compile(r"(?:unsupported|blocked)\s+GLOBAL\s+([\w.]+)|Unsupported global: GLOBAL ([\w.]+)",
                             re.IGNORECASE)


def torch_load_safe(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` restricted to tensors, plain containers and numpy arrays (no arbitrary code).

    A file that holds any other Python object (a pickle that would import or call something) is refused with
    :class:`~seqdance.errors.UnsafeFileError`; an unreadable one (truncated, not a checkpoint) raises
    :class:`CheckpointError`. Neither message invites loading the file with fewer safeguards.
    """
    import pickle

    path = Path(path)
    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        with safe(_numpy_safe_globals()) if safe is not None else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = _BLOCKED_GLOBAL.search(text)
        if found is not None:  # a reference to a Python callable or class: what a code-running pickle needs
            what = f" ({next(g for g in found.groups() if g)})"
            raise UnsafeFileError(
                f"{path}: refused: the file holds Python objects{what} besides tensors and plain data, and loading "
                "them could run code. seqdance reads only tensors, arrays and plain containers from checkpoints; "
                "use a checkpoint written by seqdance or a safetensors file"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else ""
        reason = next((line.strip() for line in detail.splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or damaged: {reason})") from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or not a torch.save file: {_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file; a truncated or foreign file is a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or damaged? {_first_line(exc)}); download or "
            "copy it again"
        ) from None


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Tensors of a ``.safetensors`` file or a ``torch.save`` checkpoint (unwrapped, DDP/compile prefixes
    removed), and the ``config`` dict stored beside them in a wrapping dict (seqdance training checkpoints)."""
    path = Path(path)
    meta = None
    if path.suffix == ".safetensors":
        state: Any = read_safetensors(path)
    else:
        state = torch_load_safe(path)
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
    return canonical_names(out, str(path)), (dict(meta) if meta is not None else None)


def canonical_names(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` with legacy LayerNorm names (``LayerNorm.gamma``/``.beta``, as transformers 5's ``save_pretrained``
    writes them) read as ``LayerNorm.weight``/``.bias``; a file holding both names of one parameter is refused."""
    out: dict[str, torch.Tensor] = {}
    renamed: dict[str, str] = {}
    for key, tensor in state.items():
        match = _LEGACY_NORM_KEY.search(key)
        if match is not None:
            new = key[: match.start(2)] + _LEGACY_NORM_NAMES[match.group(2)]
            renamed[new] = key
            key = new
        if key in out:
            raise CheckpointError(f"{source}: holds both {renamed.get(key, key)} and the same parameter under "
                                  f"another name ({key}); the file is ambiguous")
        out[key] = tensor
    return out


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of :func:`read_checkpoint`."""
    return read_checkpoint(path)[0]


def read_json(path: Path) -> dict[str, Any]:
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
        if k not in usable
        and not (k.startswith(encoder_prefix) and _OPTIONAL_ENCODER_KEYS.match(k[len(encoder_prefix):]))
    ]
    wrong_shape = [
        f"{k} {tuple(usable[k].shape)} (model: {tuple(expected[k].shape)})"
        for k in usable if usable[k].shape != expected[k].shape
    ]
    _check_finite(usable, source)
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


def _check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights with NaN or infinite values (they would give all-NaN outputs), naming the tensors."""
    bad = [key for key, tensor in state.items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        first = state[bad[0]]
        count = int((~torch.isfinite(first)).sum())
        raise NonFiniteError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values, e.g. {bad[0]} "
            f"({count} of {first.numel()} values){'; also ' + ', '.join(bad[1:4]) if len(bad) > 1 else ''}"
            f"{' ...' if len(bad) > 4 else ''}: the model is broken (a diverged training run?); use another checkpoint"
        )


def build_without_init(factory: Callable[[], ModuleT]) -> ModuleT:
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


# --- building, placing, writing ---------------------------------------------------------------------


def as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a dtype or its name ("bfloat16", "torch.float16"); ``None`` stays ``None``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16'")
    return value


def place(model: ModuleT, device: str | torch.device | None, dtype: torch.dtype | str | None) -> ModuleT:
    """A freshly loaded model moved to ``device`` / cast to ``dtype`` (when given), in eval mode."""
    model = model.to(device=device, dtype=as_dtype(dtype)) if (device or dtype) else model
    return model.eval()


def read_esm2_checkpoint(
    source: str | os.PathLike[str], revision: str | None
) -> tuple[str, EncoderConfig, dict[str, torch.Tensor]]:
    """(description, encoder config, tensors keyed ``esm.*``/``lm_head.*``) of a ``facebook/esm2_*`` checkpoint:
    a hub id, a preset or model name ("650M", "esm2_t33_650M_UR50D") or a local directory in that layout."""
    text = os.fspath(source)
    if not Path(text).expanduser().exists():  # a preset or model name ("650M", "esm2_t33_650M_UR50D") -> hub id
        try:
            preset = resolve_encoder_config(text).preset_name
        except ValueError:
            preset = None
        source = ESM2_HUB_IDS.get(preset or "", text)
    description, config_path, weights_path = resolve_source(source, revision, kind="ESM2 checkpoint")
    assert weights_path is not None
    if config_path is None:
        raise FileNotFoundError(f"{description}: an ESM2 checkpoint needs its Hugging Face config.json "
                                "beside the weights")
    config = EncoderConfig.from_hf_dict(read_json(config_path))
    state = read_state_dict(weights_path)
    if not any(k.startswith("esm.") for k in state):  # a bare EsmModel checkpoint
        state = {"esm." + k: v for k, v in state.items()}
    return description, config, state


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


def write_checkpoint(directory: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """``config.json`` + ``model.safetensors`` in ``directory``, each file replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / SAFETENSORS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict as contiguous CPU tensors (what safetensors writes)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


