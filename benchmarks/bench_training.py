"""Training throughput and peak memory of one optimisation step: reference formulation versus seqdance.

    python benchmarks/bench_training.py            # batch 16 x 256 tokens, SeqDance-35M (reference needs several GB)
    python benchmarks/bench_training.py --quick    # batch 2 x 128 tokens (~1.5 GB), to check the script works

One *step* = forward of a batch of the MD source group (residue + pair outputs), the docs/design.md#loss loss,
backward, gradient value clipping (0.5) and an AdamW step: what one micro-batch costs in training.

* ``reference``: the straightforward formulation of the released training code: ``benchmarks/reference_model.py``
  (transformers ``EsmModel`` with eager attention returning every layer's maps, the pair head materialising the
  (B, T, T, 2d) concatenation and the (B, T, T, 2A) concatenation with the stacked maps) and the released loss
  (a Python loop over proteins, one masked MSE + sqrt per protein and property). fp32 on CPU; on CUDA fp16
  autocast with a GradScaler, as the released code trained.
* ``seqdance``: ``seqdance.model.DynamicsModel`` (attention maps folded into the pair head layer by layer, the
  factorised pair head) and ``seqdance.train.loss`` (vectorised over proteins and properties). fp32 on CPU;
  on CUDA bf16 autocast (fp16 + GradScaler where bf16 is unsupported).

Both start from the same random SeqDance-35M weights and the same batch (random sequences, random targets in
the stored MD layout with masked special tokens and padding). Each configuration runs in a fresh process:
time = wall time per step (median of ``--steps`` after one warm-up step) and tokens/s = non-padding tokens
per second; CPU memory = resident-set high-water mark of the process and its increase over the resident set
just before the first step; CUDA memory = ``torch.cuda.max_memory_allocated`` during the steps. The first-step
loss of both (dropout off for that probe) is printed to show they compute the same function.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import peak_rss_gb, rss_gb

ENCODER = "35M"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
GROUP = "md"




def make_inputs(folder: Path, batch: int, tokens: int, seed: int) -> None:
    """Random SeqDance-35M weights, a padded batch and MD targets, saved for every worker process."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from seqdance import schema, tokenizer
    from seqdance.model import DynamicsModel

    torch.manual_seed(seed)
    model = DynamicsModel(ENCODER, "seqdance", dropout=0.1)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / "weights.safetensors"))

    rng = np.random.default_rng(seed)
    lengths = [tokens] + [int(rng.integers(tokens // 2, tokens + 1)) for _ in range(batch - 1)]
    seqs = ["".join(rng.choice(list(AMINO), t - 2)) for t in lengths]
    ids, mask = tokenizer.pad_batch([tokenizer.encode(s) for s in seqs])
    c_res, c_pair = schema.stored_width("residue", "md"), schema.stored_width("pair", "md")
    res = torch.full((batch, tokens, c_res), schema.MASK_VALUE)
    pair = torch.full((batch, tokens, tokens, c_pair), schema.MASK_VALUE)
    gen = torch.Generator().manual_seed(seed)
    for b, t in enumerate(lengths):
        res[b, 1 : t - 1] = torch.rand(t - 2, c_res, generator=gen)
        pair[b, 1 : t - 1, 1 : t - 1] = torch.rand(t - 2, t - 2, c_pair, generator=gen)
    save_file({"input_ids": ids, "attention_mask": mask, "residue": res, "pair": pair},
              str(folder / "batch.safetensors"))


def reference_loss(output: dict, res_feat, pair_feat, weights: dict[str, float]):
    """The released calculate_loss for an MD group: a loop over proteins per property (channel-0 masks)."""
    import torch
    import torch.nn.functional as F

    from seqdance import schema

    valid_res = res_feat[:, :, 0] != -1
    valid_pair = pair_feat[:, :, :, 0] != -1
    losses = []
    for prop in schema.group_properties(GROUP):
        if prop.is_residue:
            pred, feat, valid = output["residue"][..., prop.channels], res_feat[..., prop.store_channels], valid_res
        else:
            pred, feat, valid = output["pair"][..., prop.channels], pair_feat[..., prop.store_channels], valid_pair
        per_protein = torch.stack([
            torch.sqrt(F.mse_loss(pred[p][valid[p]].float(), feat[p][valid[p]])) for p in range(len(feat))
        ]).mean()
        losses.append(per_protein * weights[prop.name])
    return torch.stack(losses).sum()


def worker(config: str, folder: Path, steps: int, device: str, amp: bool) -> dict:
    import torch
    from safetensors.torch import load_file

    from seqdance.model.config import resolve_encoder_config
    from seqdance.train.loss import batch_group_loss
    from seqdance.train.schedule import build_optimizer
    from seqdance.train.weights import target_shares

    dev = torch.device(device)
    state = load_file(str(folder / "weights.safetensors"))
    data = {k: v.to(dev) for k, v in load_file(str(folder / "batch.safetensors")).items()}
    weights = target_shares(GROUP)  # any fixed positive weights: the same for both
    if config == "reference":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from reference_model import ReferenceDynamics

        model = ReferenceDynamics.from_state_dict(state, resolve_encoder_config(ENCODER)).to(dev)
        amp_dtype = torch.float16 if amp else None

        def step_loss():
            out = model(data["input_ids"], data["attention_mask"])
            return reference_loss(out, data["residue"], data["pair"], weights)
    else:
        from seqdance.model import DynamicsModel

        model = DynamicsModel(ENCODER, "seqdance", dropout=0.1)
        model.load_state_dict(state)
        model.to(dev)
        amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None

        def step_loss():
            out = model(data["input_ids"], data["attention_mask"], pairs=True)
            return batch_group_loss(out.residue, out.pair, data["residue"], data["pair"], GROUP, weights).total

    # freeze parameters that never get a gradient (pooler, contact head) in both, as the trainer does
    for name, p in model.named_parameters():
        if ".pooler." in name or "contact_head" in name:
            p.requires_grad_(False)
    optimizer = build_optimizer(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype is torch.float16)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    model.eval()  # dropout off for the cross-check of the first loss
    with torch.no_grad(), autocast():
        probe = float(step_loss())
    model.train()

    def one_step() -> float:
        with autocast():
            loss = step_loss()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_value_([p for p in model.parameters() if p.grad is not None], 0.5)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    one_step()  # warm-up
    sync()
    rss_before = rss_gb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        one_step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    tokens = int(data["attention_mask"].sum())
    result = {
        "config": config, "device": device, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "probe_loss": probe, "step_s": statistics.median(times), "cpu_s": statistics.median(cpu_times),
        "tokens": tokens, "tokens_per_s": tokens / statistics.median(times),
    }
    if dev.type == "cuda":
        result["peak_gb"] = torch.cuda.max_memory_allocated(dev) / 1024**3
    else:
        result["peak_gb"] = peak_rss_gb()
        result["added_gb"] = peak_rss_gb() - rss_before + 0.0
    return result


def run_config(config: str, folder: Path, steps: int, device: str, amp: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", config, "--folder", str(folder), "--steps", str(steps),
           "--device", device] + (["--amp"] if amp else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"config": config, "device": device, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2 x 128 tokens, 1 timed step")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-only", action="store_true", help="skip the CUDA runs even when a GPU exists")
    parser.add_argument("--cuda-only", action="store_true", help="skip the (slow) CPU runs when a GPU exists")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--amp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.steps, args.device, args.amp)))
        return

    import torch

    batch = args.batch or (2 if args.quick else 16)
    tokens = args.tokens or (128 if args.quick else 256)
    steps = args.steps or (1 if args.quick else 3)
    runs = [("cpu", False)]
    if torch.cuda.is_available() and not args.cpu_only:
        cuda_runs = [("cuda", False), ("cuda", True)]
        runs = cuda_runs if args.cuda_only else [*runs, *cuda_runs]
    print(f"SeqDance-{ENCODER} training step, batch {batch} x {tokens} tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, batch, tokens, args.seed)
        for device, amp in runs:
            for config in ("reference", "seqdance"):
                rows.append(run_config(config, folder, steps, device, amp))
                print(f"  done: {config} on {device}{' (mixed precision)' if amp else ''}", file=sys.stderr)
    header = f"{'config':<10} {'device':<6} {'precision':<9} {'step s':>8} {'CPU s':>8} {'tokens/s':>10} " \
             f"{'peak GB':>8} {'added GB':>9} {'probe loss':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['config']:<10} {r['device']:<6} failed: {r['error']}")
            continue
        added = f"{r['added_gb']:.2f}" if "added_gb" in r else "-"
        print(f"{r['config']:<10} {r['device']:<6} {r['amp']:<9} {r['step_s']:>8.3f} {r['cpu_s']:>8.2f} "
              f"{r['tokens_per_s']:>10.0f} {r['peak_gb']:>8.2f} {added:>9} {r['probe_loss']:>11.6f}")
    by = {(r["config"], r["device"], r.get("amp")): r for r in rows if "error" not in r}
    for device, amp in runs:
        keys = [k for k in by if k[1] == device and (k[2] != "fp32") == amp]
        ref = next((by[k] for k in keys if k[0] == "reference"), None)
        ours = next((by[k] for k in keys if k[0] == "seqdance"), None)
        if ref and ours:
            print(f"{device}{' mixed' if amp else ' fp32'}: seqdance {ours['tokens_per_s'] / ref['tokens_per_s']:.2f}x "
                  f"the reference throughput, {ours['peak_gb'] / ref['peak_gb']:.2f}x its peak memory; "
                  f"|probe loss difference| {abs(ours['probe_loss'] - ref['probe_loss']):.2e}")


if __name__ == "__main__":
    main()
