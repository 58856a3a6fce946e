"""What ``score`` and ``benchmark-dms`` share on the command line: the scoring options and the model loading."""

from __future__ import annotations

import argparse

from seqdance.cli.options import SOURCE, add_device_option, add_dtype_option, add_quiet_option, int_at_least
from seqdance.cli.run_options import add_shard_option
from seqdance.errors import InputError
from seqdance.model.kinds import MODEL_SELECTS
from seqdance.schema import PROPERTY_NAMES


def property_list(values: list[str] | None) -> list[str] | None:
    """Property names from ``--properties`` (space- or comma-separated); None means all."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROPERTY_NAMES]
    if unknown:
        raise InputError(f"unknown property name(s) {unknown}; known: {', '.join(PROPERTY_NAMES)}")
    return names


def add_scoring_options(parser: argparse.ArgumentParser, shard_what: str) -> None:
    from seqdance.schema import ESM2_MAX_RESIDUES
    from seqdance.scoring.options import DEFAULT_LOCAL_RADIUS, REGIONS

    parser.add_argument("--model", required=True, metavar=SOURCE,
                        help="dynamics model: Hugging Face id (e.g. ChaoHou/ESMDance), local folder or update_*.pt")
    parser.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                        help="model kind; needed for a training checkpoint (update_*.pt)")
    parser.add_argument("--esm2", metavar=SOURCE,
                        help="also score with an ESM2 masked LM (e.g. facebook/esm2_t12_35M_UR50D or a local folder): "
                        "masked-marginal and wild-type-marginal log-likelihood ratios")
    parser.add_argument("--esm2-pll", action="store_true",
                        help="with --esm2, also the ESM2 pseudo-log-likelihood difference of every variant (column "
                        "esm2_pll; the ESM2 baseline defined for insertions and deletions): one masked forward per "
                        "position of each variant, so off by default")
    parser.add_argument("--properties", nargs="+", metavar="NAME",
                        help="properties to score (default: all 23); only residue properties -> fast path without "
                        "pair outputs")
    parser.add_argument("--region", choices=REGIONS, default="reference",
                        help="entries averaged in each property's change: 'reference' = all tokens incl. <cls>/<eos> "
                        "and all pairs (the published definition, default); 'residues' = residue tokens only; "
                        "'local' = residues near the mutated sites")
    parser.add_argument("--local-radius", type=int_at_least(0), default=DEFAULT_LOCAL_RADIUS, metavar="R",
                        help=f"half-width in residues of the 'local' region (default {DEFAULT_LOCAL_RADIUS})")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip invalid mutants (reported) instead of stopping")
    parser.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                        help="mutants per forward pass (default: chosen from the protein length)")
    parser.add_argument("--window", type=int_at_least(1, maximum=ESM2_MAX_RESIDUES), default=ESM2_MAX_RESIDUES,
                        metavar="N", help=f"most residues per forward pass (default {ESM2_MAX_RESIDUES}, the ESM2 "
                        "limit); longer proteins are scored on a window of N residues around each variant's sites")
    add_device_option(parser)
    add_dtype_option(parser)
    add_shard_option(parser, shard_what)
    add_quiet_option(parser, deprecated=("--no-progress",))


def check_pll(args: argparse.Namespace) -> bool:
    """``--esm2-pll`` (it needs ``--esm2``)."""
    if getattr(args, "esm2_pll", False) and not args.esm2:
        raise InputError("--esm2-pll scores with an ESM2 model: give --esm2 too")
    return bool(getattr(args, "esm2_pll", False))


def load_models(args: argparse.Namespace):
    """The dynamics model of ``--model`` (on ``--device``; torchrun: the rank's GPU) and the ESM2 of ``--esm2``.

    A fine-tuned model folder (``--model RUN/model``) is kept in ``args.finetuned_model`` and its dynamics base
    (None for a plain ESM2 base) is returned as the model; ``--target`` names the fine-tuned target to score.
    """
    from seqdance.devices import resolve_device
    from seqdance.inference.sharding import local_rank
    from seqdance.model.hints import model_option

    device = resolve_device(args.device, local_rank=local_rank())
    with model_option("--model", "--model-select"):
        model = _dynamics_or_finetuned(args, device)
    esm_model = None
    if args.esm2:
        from seqdance.devices import model_dtype
        from seqdance.model import load_esm2_masked_lm

        owner = model if model is not None else args.finetuned_model
        with model_option("--esm2"):
            esm_model = load_esm2_masked_lm(args.esm2, device=next(owner.parameters()).device,
                                            dtype=model_dtype(args.dtype))
    return model, esm_model


def _dynamics_or_finetuned(args: argparse.Namespace, device):
    from seqdance.errors import InputError
    from seqdance.finetuning.files import is_finetuned_dir
    from seqdance.model import load_model

    args.finetuned_model = None
    target = getattr(args, "target", None)
    if not is_finetuned_dir(args.model):
        if target:
            raise InputError(f"--target scores with a fine-tuned model (--model RUN/model); {args.model} is not one")
        from seqdance.devices import model_dtype

        return load_model(args.model, model_select=args.model_select, device=device, dtype=model_dtype(args.dtype))
    if args.dtype != "float32":
        raise InputError(f"{args.model} is a fine-tuned model, which runs in float32: drop --dtype")
    if target is None:
        raise InputError(f"{args.model} is a fine-tuned model: name its target with --target (docs/finetune.md)")
    from seqdance.finetuning.files import load_finetuned
    from seqdance.finetuning.predict import dynamics_base

    args.finetuned_model = load_finetuned(args.model, device=device)
    return dynamics_base(args.finetuned_model)
