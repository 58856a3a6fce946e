"""The fine-tuned model: a base encoder (SeqDance, ESMDance or plain ESM2), optional LoRA adapters, and a task
head that may also read the base model's own predicted dynamics.

* Head input per residue: the encoder's last hidden state (LayerNorm'd) and, with dynamics, the 63 dynamics
  features of :func:`dynamics_features` (LayerNorm'd separately).
* Protein and mutant tasks pool over residue tokens: ``mean`` (the raw features are averaged, then normalised, so
  a frozen encoder's pooled vectors can be cached) or ``attention`` (a learned query scores each residue; softmax
  over the protein's residues). Residue tasks apply the head to every residue.
* LoRA (:func:`add_lora`) uses PEFT's adapters on the encoder's named linear projections; everything but the
  adapters and the head stays frozen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seqdance.errors import InputError
from seqdance.model.encoder import Esm2Encoder
from seqdance.schema import N_PAIR_CHANNELS, N_RESIDUE_CHANNELS

#: Dynamics inputs per residue: the 50 residue channels and, per pair channel, the mean over the residue's partners.
N_DYNAMICS_FEATURES = N_RESIDUE_CHANNELS + N_PAIR_CHANNELS


def encoder_of(model: nn.Module) -> Esm2Encoder:
    """The ESM2 encoder of a DynamicsModel (``esm2``), an EsmMaskedLM (``esm``) or a bare encoder."""
    if isinstance(model, Esm2Encoder):
        return model
    for attr in ("esm2", "esm"):
        found = getattr(model, attr, None)
        if isinstance(found, Esm2Encoder):
            return found
    raise InputError(f"{type(model).__name__} holds no ESM2 encoder to fine-tune")


def is_dynamics_model(model: nn.Module) -> bool:
    from seqdance.model.dynamics import DynamicsModel

    return isinstance(model, DynamicsModel)


@torch.no_grad()
def dynamics_features(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      residue_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, 63) float32: a dynamics model's 50 residue channels and, per pair channel, the mean of the pair map
    over the residue's partners (the other residue tokens of its protein). Zero at non-residue tokens."""
    out = model(input_ids, attention_mask, pairs=True)
    mask = residue_mask.to(torch.float32)
    pair = out.pair.float() * mask[:, None, :, None]
    partners = (mask.sum(1) - 1).clamp(min=1)[:, None, None]
    diagonal = torch.diagonal(out.pair.float(), dim1=1, dim2=2).transpose(1, 2) * mask[..., None]
    pair_mean = (pair.sum(2) - diagonal) / partners
    return torch.cat([out.residue.float(), pair_mean], dim=-1) * mask[..., None]


class TaskHead(nn.Module):
    """Pooling (protein tasks) and a two-layer MLP from the encoder's (and the dynamics') features."""

    def __init__(self, hidden_size: int, n_dynamics: int, n_outputs: int, *, task: str, pooling: str = "mean",
                 hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.task, self.pooling = task, pooling
        self.hidden_size, self.n_dynamics, self.n_outputs = hidden_size, n_dynamics, n_outputs
        self.norm = nn.LayerNorm(hidden_size)
        self.dynamics_norm = nn.LayerNorm(n_dynamics) if n_dynamics else None
        width = hidden_size + n_dynamics
        self.query = nn.Linear(width, 1) if (pooling == "attention" and task != "residue") else None
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs))
        # per-feature standardisation with the training rows' statistics (fixed; see fit_standardisation)
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_scale", torch.ones(width))

    @torch.no_grad()
    def fit_standardisation(self, hidden: torch.Tensor, dynamics: torch.Tensor | None = None) -> None:
        """Set the fixed per-feature mean and sd of the normalised inputs from training rows' frozen features
        ((n, d) pooled or per residue, and (n, k)): the small differences between mutants of one protein would
        otherwise be lost in the scale of the features that all of them share."""
        self.feature_mean.zero_()
        self.feature_scale.fill_(1.0)
        x = self._features(hidden, dynamics)
        self.feature_mean.copy_(x.mean(0))
        sd = x.std(0) if x.shape[0] > 1 else torch.ones_like(self.feature_scale)
        self.feature_scale.copy_(torch.where(sd > 1e-6, sd, torch.ones_like(sd)))

    @property
    def pools_raw_mean(self) -> bool:
        """Whether the head reads only the mean of the raw per-residue features (what a cache can hold)."""
        return self.task != "residue" and self.pooling == "mean"

    def _features(self, hidden: torch.Tensor, dynamics: torch.Tensor | None) -> torch.Tensor:
        parts = [self.norm(hidden.float())]
        if self.dynamics_norm is not None:
            if dynamics is None:
                raise InputError("this head was trained with dynamics inputs; none were given")
            parts.append(self.dynamics_norm(dynamics.float()))
        x = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return (x - self.feature_mean) / self.feature_scale

    def forward_pooled(self, hidden: torch.Tensor, dynamics: torch.Tensor | None = None) -> torch.Tensor:
        """(B, outputs) from mean-pooled raw features (B, d) and (B, k)."""
        return self.mlp(self._features(hidden, dynamics))

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor,
                dynamics: torch.Tensor | None = None) -> torch.Tensor:
        """(B, outputs) for protein tasks, (B, T, outputs) for residue tasks, from per-token features."""
        if self.task == "residue":
            return self.mlp(self._features(hidden, dynamics))
        mask = residue_mask.to(torch.float32)[..., None]
        if self.query is None:
            count = mask.sum(1).clamp(min=1)
            pooled_h = (hidden.float() * mask).sum(1) / count
            pooled_d = None if dynamics is None else (dynamics.float() * mask).sum(1) / count
            return self.forward_pooled(pooled_h, pooled_d)
        x = self._features(hidden, dynamics)
        scores = self.query(x).masked_fill(mask == 0, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return self.mlp((weights * x).sum(1))


class FinetunedModel(nn.Module):
    """A base model's encoder and a :class:`TaskHead`; ``forward`` maps tokens to the task's outputs.

    ``base`` is the whole loaded base (kept for saving and for the 23 properties of a dynamics base);
    ``dynamics_source`` the frozen model that supplies the dynamics inputs (None without them).
    """

    def __init__(self, base: nn.Module, head: TaskHead, *, dynamics_source: nn.Module | None = None) -> None:
        super().__init__()
        self.base = base
        self.head = head
        # not a registered submodule: it is frozen, shared and saved by reference
        object.__setattr__(self, "dynamics_source", dynamics_source)
        self.info: dict = {}

    @property
    def encoder(self) -> Esm2Encoder:
        return encoder_of(self.base)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, residue_mask: torch.Tensor,
                dynamics: torch.Tensor | None = None) -> torch.Tensor:
        hidden, _ = self.encoder(input_ids, attention_mask)
        return self.head(hidden, residue_mask, dynamics)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes (head, adapters, or the encoder for full fine-tuning)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}


# --- methods -----------------------------------------------------------------------------------------------


def linear_module_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def resolve_lora_targets(encoder: nn.Module, targets: Sequence[str]) -> list[str]:
    """Check that every target names linear layers of the encoder (as PEFT matches them: the full name or its
    ending after a dot); an unknown one is an error listing the names that exist."""
    names = linear_module_names(encoder)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.split(".layer.", 1)[1].split(".", 1)[1] for n in names if ".layer." in n})
        raise InputError(f"LoRA target module(s) {', '.join(missing)} do not exist in the model (its encoder's linear "
                         f"layers end in: {', '.join(leaves)})")
    return list(dict.fromkeys(targets))


def _peft():
    try:
        import peft
    except ImportError as exc:
        raise InputError("--method lora needs PEFT: pip install 'seqdance[finetune]'") from exc
    return peft


def add_lora(encoder: nn.Module, *, rank: int, alpha: float, dropout: float, targets: Sequence[str]) -> list[str]:
    """Insert LoRA adapters (PEFT) into the encoder's target projections, in place; returns the targets."""
    targets = resolve_lora_targets(encoder, targets)
    peft = _peft()
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                             bias="none")
    peft.inject_adapter_in_model(config, encoder)
    return targets


def lora_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights (PEFT's key names), on the CPU."""
    peft = _peft()
    return {k: v.detach().cpu().contiguous() for k, v in peft.get_peft_model_state_dict(encoder).items()}


def load_lora_state(encoder: nn.Module, state: dict[str, torch.Tensor]) -> None:
    peft = _peft()
    result = peft.set_peft_model_state_dict(encoder, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise InputError(f"the LoRA adapter does not fit its base model (unexpected keys: {unexpected[:5]})")


def merge_lora(encoder: nn.Module) -> None:
    """Fold every adapter into its base weights and put the plain linear layers back, in place."""
    for name, module in list(encoder.named_modules()):
        if hasattr(module, "merge") and hasattr(module, "get_base_layer"):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = encoder.get_submodule(parent_name) if parent_name else encoder
            setattr(parent, child, module.get_base_layer())


def set_trainable(model: FinetunedModel, method: str) -> None:
    """Freeze what ``method`` keeps fixed: ``head`` the whole base, ``lora`` all but the adapters, ``full`` nothing
    of the encoder that a forward uses (its pooler, contact head and the dynamics heads stay frozen)."""
    model.base.requires_grad_(False)
    model.head.requires_grad_(True)
    encoder = model.encoder
    if method == "lora":
        for name, param in encoder.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
    elif method == "full":
        encoder.embeddings.requires_grad_(True)
        encoder.encoder.requires_grad_(True)
    if hasattr(model.base, "freeze_encoder"):  # DynamicsModel keeps a frozen encoder in eval mode otherwise
        model.base.freeze_encoder = method == "head"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
