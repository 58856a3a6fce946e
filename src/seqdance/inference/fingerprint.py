"""A model's fingerprint: a hash of what it computes (class, architecture and every tensor of its state dict).

Outputs record it so that a resumed or sharded run reuses a result only when it came from the same weights,
whatever the model was called (a hub id that moved to new weights, a checkpoint overwritten in place).
"""

from __future__ import annotations

import hashlib
import json

import torch

_CACHE_ATTR = "_seqdance_fingerprint"


def _architecture(module: torch.nn.Module) -> dict:
    info: dict = {"class": f"{type(module).__module__}.{type(module).__qualname__}"}
    config = getattr(module, "encoder_config", None)
    if config is not None and hasattr(config, "to_dict"):
        info["encoder"] = config.to_dict()
    for name in ("model_select",):
        if hasattr(module, name):
            info[name] = str(getattr(module, name))
    return info


def module_fingerprint(module: torch.nn.Module, *, refresh: bool = False) -> str:
    """SHA-256 (hex) of a module's architecture and state dict (names, dtypes, shapes and bytes).

    The value is cached on the module; pass ``refresh=True`` after changing its weights in place.
    """
    cached = getattr(module, _CACHE_ATTR, None)
    if cached is not None and not refresh:
        return cached
    digest = hashlib.sha256()
    digest.update(json.dumps(_architecture(module), sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"\n{name}|{data.dtype}|{tuple(data.shape)}\n".encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    value = digest.hexdigest()
    object.__setattr__(module, _CACHE_ATTR, value)
    return value
