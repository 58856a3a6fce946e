"""Costs of the three fine-tuning methods (docs/finetune.md, "How to choose"); run on demand.

1. ``head``: epoch 1 (the frozen encoder's forward over every protein, cached, then the head) against each later
   epoch (the head on cached features only), through ``seqdance.finetune`` on random proteins.
2. Trainable parameters and optimiser state (AdamW's two moments, bytes after one step) of ``lora`` (rank 8 on the
   query, key, value and attention-output projections) and ``full``, for the 35M shape.
3. Peak memory (RSS of a fresh process) and training tokens/s of one update per method for the 35M shape at
   L = 512, batch 8, with and without gradient checkpointing (``head``: the step on cached features, and the
   one-off feature forward).

    python benchmarks/bench_finetune.py [--quick]      # --quick: the tiny shape, L = 64, to check the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _random_model(shape: str):
    import torch

    from seqdance.model import DynamicsModel

    torch.manual_seed(0)
    return DynamicsModel(shape, "esmdance").eval()


def one_step(method: str, shape: str, length: int, batch: int, checkpointing: bool) -> dict:
    """One training update (forward, loss, backward, AdamW) in this process; prints a JSON line."""
    import torch
    from _memory import peak_rss_gb

    from seqdance.finetuning.model import FinetunedModel, TaskHead, add_lora, set_trainable
    from seqdance.tokenizer import CLS_ID, EOS_ID

    torch.manual_seed(0)
    base = _random_model(shape)
    d = base.encoder_config.hidden_size
    head = TaskHead(d, 0, 1, task="protein")
    model = FinetunedModel(base, head)
    if method == "lora":
        add_lora(base.esm2, rank=8, alpha=16, dropout=0.0, targets=["query", "key", "value", "attention.output.dense"])
    set_trainable(model, method)
    base.esm2.gradient_checkpointing = checkpointing
    model.train()
    ids = torch.randint(4, 24, (batch, length))
    ids[:, 0], ids[:, -1] = CLS_ID, EOS_ID
    mask = torch.ones_like(ids)
    residues = torch.zeros_like(ids, dtype=torch.bool)
    residues[:, 1:-1] = True
    target = torch.randn(batch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    timings = []
    for _ in range(2):
        began = time.perf_counter()
        if method == "head":
            with torch.no_grad():
                hidden = base.esm2(ids, mask)[0]
            feature_seconds = time.perf_counter() - began
            began = time.perf_counter()
            pooled = (hidden * residues[..., None]).sum(1) / residues.sum(1, keepdim=True)
            loss = ((head.forward_pooled(pooled)[:, 0] - target) ** 2).mean()
        else:
            loss = ((model(ids, mask, residues)[:, 0] - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timings.append(time.perf_counter() - began)
    step = min(timings)
    result = {"method": method, "checkpointing": checkpointing, "step_s": step, "tokens_per_s": batch * length / step,
              "peak_rss_gb": peak_rss_gb()}
    if method == "head":
        result["feature_forward_s"] = feature_seconds
        result["feature_tokens_per_s"] = batch * length / feature_seconds
    return result


def parameter_budget(shape: str) -> dict:
    import torch

    from seqdance.finetuning.model import FinetunedModel, TaskHead, add_lora, set_trainable

    out = {}
    for method in ("lora", "full"):
        base = _random_model(shape)
        model = FinetunedModel(base, TaskHead(base.encoder_config.hidden_size, 0, 1, task="protein"))
        if method == "lora":
            add_lora(base.esm2, rank=8, alpha=16, dropout=0.0,
                     targets=["query", "key", "value", "attention.output.dense"])
        set_trainable(model, method)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                    if torch.is_tensor(t) and t.dim() > 0)
        out[method] = {"trainable": sum(p.numel() for p in params), "optimizer_state_bytes": state,
                       "encoder": sum(p.numel() for p in base.esm2.parameters())}
    return out


def head_epochs(shape: str, n: int, length: int, epochs: int, work: Path) -> dict:
    """Epoch 1 = the frozen encoder's forward over every protein (into the cache) + one head epoch; epochs 2..N =
    the head on the cached features."""
    import numpy as np
    import pandas as pd

    from seqdance.finetuning.config import FinetuneConfig
    from seqdance.finetuning.loop import train_job
    from seqdance.finetuning.run import Combo, Runner
    from seqdance.finetuning.splits import make_folds

    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), length)) for _ in range(n)]
    labels = work / "labels.csv"
    pd.DataFrame({"name": [f"p{i}" for i in range(n)], "sequence": sequences,
                  "y": [s.count("K") for s in sequences]}).to_csv(labels, index=False)
    model = work / "model"
    _random_model(shape).save_pretrained(model)
    runner = Runner(FinetuneConfig.from_dict({
        "labels": [str(labels)], "task": "protein", "target": "y", "models": [f"m={model}"], "epochs": epochs,
        "patience": epochs, "progress": False, "output_dir": str(work / "run"), "cache_dir": str(work / "cache")}))
    runner.load()
    began = time.perf_counter()
    runner.frozen("m", "hidden", True)
    features = time.perf_counter() - began
    fold = make_folds(runner.labels, "kfold", folds=2)[0][0]
    combo = Combo("m", "head", False)
    head = runner.build(combo, "bench", fold.train)
    result = train_job(head, runner.inputs(combo, head), fold.train, fold.valid, fold.test, runner.settings("head"),
                       key="bench", label="bench", out_dir=None)
    seconds = [h["seconds"] for h in result.history]
    return {"features_s": features, "epochs": seconds, "epoch1_s": features + seconds[0],
            "later_mean_s": float(np.mean(seconds[1:]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape, L = 64, batch 2 (checks the script)")
    parser.add_argument("--step", nargs=3, metavar=("METHOD", "SHAPE", "CHECKPOINTING"), help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    if args.step:
        method, shape, ckpt = args.step
        print(json.dumps(one_step(method, shape, args.length, args.batch, ckpt == "1")))
        return
    shape, length, batch = ("tiny", 64, 2) if args.quick else ("35M", args.length, args.batch)
    import tempfile

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (no GPU used)")
    with tempfile.TemporaryDirectory() as tmp:
        from seqdance.finetuning.inputs import frozen_features  # noqa: F401  (import cost out of the timing)

        n, length_h = (64, 62) if args.quick else (256, 254)
        e = head_epochs(shape, n, length_h, 6, Path(tmp))
        print(f"\n1. head, {shape}, {n} proteins of {length_h} residues (training half: {n // 2 - n // 20} rows): "
              f"epoch 1 = feature forward {e['features_s']:.2f} s + head {e['epochs'][0]:.3f} s = "
              f"{e['epoch1_s']:.2f} s; "
              f"epochs 2..6: {', '.join(f'{v:.3f}' for v in e['epochs'][1:])} s "
              f"(mean {e['later_mean_s']:.3f} s, {e['epoch1_s'] / e['later_mean_s']:.0f}x cheaper)")
    budget = parameter_budget(shape)
    lora, full = budget["lora"], budget["full"]
    print(f"\n2. {shape}: lora trains {lora['trainable']:,} parameters, full {full['trainable']:,} "
          f"({100 * lora['trainable'] / full['trainable']:.2f}%); "
          f"AdamW state {lora['optimizer_state_bytes'] / 2**20:.2f} "
          f"MiB vs {full['optimizer_state_bytes'] / 2**20:.1f} MiB "
          f"({100 * lora['optimizer_state_bytes'] / full['optimizer_state_bytes']:.2f}%)")
    print(f"\n3. one update, {shape}, L = {length}, batch {batch}, fresh process each (CPU):")
    print("| method | gradient checkpointing | step (s) | tokens/s | peak RSS (GB) |")
    print("|---|---|---|---|---|")
    for method, ckpt in (("head", "0"), ("lora", "0"), ("lora", "1"), ("full", "0"), ("full", "1")):
        run = subprocess.run([sys.executable, __file__, "--step", method, shape, ckpt, "--length", str(length),
                              "--batch", str(batch)], capture_output=True, text=True)
        if run.returncode:
            print(run.stderr)
            raise SystemExit(1)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        extra = (f" (feature forward once: {r['feature_forward_s']:.2f} s, {r['feature_tokens_per_s']:,.0f} tokens/s)"
                 if method == "head" else "")
        print(f"| {method} | {'yes' if ckpt == '1' else 'no'} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
              f"{r['peak_rss_gb']:.2f} |{extra}")


if __name__ == "__main__":
    main()
