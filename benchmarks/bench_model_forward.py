"""Forward time and peak memory of a full prediction: the reference formulation versus seqdance.

    python benchmarks/bench_model_forward.py            # L = 256 and 1,024 tokens (needs ~12 GB for the reference)
    python benchmarks/bench_model_forward.py --quick    # L = 256 only (~1.5 GB)

Three configurations run on the same random ESM2-35M-shaped weights (saved once, loaded by every run):

* ``reference``: the straightforward formulation (``benchmarks/reference_model.py``: transformers ``EsmModel``
  with eager attention, the pair head materialising the (T, T, 2d) concatenation), residue + pair outputs;
* ``seqdance``: ``seqdance.inference.predict`` of one sequence, residue + pair, results as numpy arrays;
* ``residue-only``: ``predict(..., pairs=False)`` (SDPA attention, no attention maps, no pair head).

L counts tokens, ``<cls>`` and ``<eos>`` included (L = 1,024 is 1,022 residues: one full window, so every
configuration runs exactly one forward of L tokens). Batch size 1, float32, CPU, ``torch.inference_mode``.

What is measured: each configuration runs in a FRESH Python process. Time is the wall time of one call
(best of ``--repeats``, after a warm-up call on 16 residues) and the CPU time of all its threads (less
sensitive to other load on the machine than wall time). Peak memory is the process's resident-set
high-water mark (``ru_maxrss``, so it includes the interpreter, torch and the weights) and, beside it, the
increase of that mark over the resident set just before the first timed call (the memory the forward adds).
``--check`` also reports the largest output difference between reference and seqdance at the smallest L.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _memory import peak_rss_gb, rss_gb

CONFIGS = ("reference", "seqdance", "residue-only")
ENCODER = "35M"
AMINO = "ACDEFGHIKLMNPQRSTVWY"




def _sequence(n_residues: int, seed: int) -> str:
    import numpy as np

    return "".join(np.random.default_rng(seed).choice(list(AMINO), n_residues))


def make_weights(path: Path, seed: int) -> None:
    """Random 35M-shaped ESMDance weights (encoder and heads), saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    from seqdance.model import DynamicsModel

    torch.manual_seed(seed)
    model = DynamicsModel(ENCODER, "esmdance")
    with torch.no_grad():  # random, non-zero head biases like a trained model
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.02 * torch.randn_like(param))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))


def _load_ours(weights: Path):
    from safetensors.torch import load_file

    from seqdance.model import DynamicsModel

    model = DynamicsModel(ENCODER, "esmdance")
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def _load_reference(weights: Path):
    from reference_model import ReferenceDynamics
    from safetensors.torch import load_file

    from seqdance.model.config import resolve_encoder_config

    return ReferenceDynamics.from_state_dict(load_file(str(weights)), resolve_encoder_config(ENCODER)).eval()


def _runner(config: str, weights: Path):
    """A callable predicting one sequence with the given configuration."""
    import torch

    from seqdance.tokenizer import encode, pad_batch

    if config == "reference":
        model = _load_reference(weights)

        def call(seq: str):
            ids, mask = pad_batch([encode(seq)])
            with torch.inference_mode():
                return model(ids, mask)

        return call
    model = _load_ours(weights)
    from seqdance.inference.predict import predict

    pairs = config == "seqdance"
    return lambda seq: predict(model, [seq], pairs=pairs, window=None)


def worker(config: str, length: int, weights: Path, repeats: int, seed: int) -> dict:
    """Run one configuration in this (fresh) process and report time and memory."""
    call = _runner(config, weights)
    call(_sequence(16, seed))  # warm-up: lazy initialisation, thread pools
    seq = _sequence(length - 2, seed)
    rss_before = rss_gb()
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = call(seq)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        del result
    peak = peak_rss_gb()
    return {
        "config": config,
        "length": length,
        "time_s": min(times),
        "cpu_s": min(cpu_times),
        "peak_rss_gb": peak,
        "added_gb": max(0.0, peak - rss_before),
    }


def check(length: int, weights: Path, seed: int) -> dict:
    """Largest |reference - seqdance| over residue and pair outputs (special tokens included)."""
    import torch

    from seqdance.tokenizer import encode, pad_batch

    ids, mask = pad_batch([encode(_sequence(length - 2, seed))])
    with torch.inference_mode():
        ref = _load_reference(weights)(ids, mask)
        ours = _load_ours(weights)(ids, mask, pairs=True)
    return {
        "length": length,
        "residue_max_abs_diff": float((ref["residue"] - ours.residue).abs().max()),
        "pair_max_abs_diff": float((ref["pair"] - ours.pair).abs().max()),
    }


def _spawn(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="L = 256 only")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="token lengths (default 256 1024)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per configuration (best is shown)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="also compare outputs at the smallest L")
    parser.add_argument("--worker", choices=(*CONFIGS, "check"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # inside a fresh subprocess
        length = args.lengths[0]
        if args.worker == "check":
            print(json.dumps(check(length, args.weights, args.seed)))
        else:
            print(json.dumps(worker(args.worker, length, args.weights, args.repeats, args.seed)))
        return 0

    lengths = args.lengths or ([256] if args.quick else [256, 1024])
    if min(lengths) < 3:
        parser.error("lengths count tokens and must be at least 3")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, encoder {ENCODER}, float32, batch 1")
    print("peak RSS = whole-process high-water mark (fresh process per row); added = peak - RSS before the call")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.safetensors"
        make_weights(weights, args.seed)
        common = ["--weights", str(weights), "--repeats", str(args.repeats), "--seed", str(args.seed)]
        print(f"\n{'config':<14}{'L':>6}{'time (s)':>10}{'cpu (s)':>9}{'peak RSS (GB)':>15}{'added (GB)':>12}"
              "  vs reference")
        for length in lengths:
            rows = {}
            for config in args.configs:
                rows[config] = row = _spawn(["--worker", config, "--lengths", str(length), *common])
                ratio = ""
                ref = rows.get("reference")
                if ref is not None and config != "reference":
                    ratio = (f"{ref['time_s'] / row['time_s']:.1f}x faster, "
                             f"{row['peak_rss_gb'] / ref['peak_rss_gb']:.2f} mem")
                print(
                    f"{config:<14}{length:>6}{row['time_s']:>10.2f}{row['cpu_s']:>9.2f}{row['peak_rss_gb']:>15.2f}"
                    f"{row['added_gb']:>12.2f}  {ratio}",
                    flush=True,
                )
        if args.check:
            result = _spawn(["--worker", "check", "--lengths", str(min(lengths)), *common])
            print(
                f"\nmax |reference - seqdance| at L={result['length']}: residue {result['residue_max_abs_diff']:.2e}, "
                f"pair {result['pair_max_abs_diff']:.2e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
