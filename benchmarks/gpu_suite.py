"""Sections of ``benchmarks/gpu_suite.sh`` that have no benchmark script of their own: prediction and SASA.

    python benchmarks/gpu_suite.py predict --device cuda     # L = 256 and 1,024 tokens, fp32 and bf16
    python benchmarks/gpu_suite.py sasa --device cuda        # SASA of adenylate kinase frames: torch vs numba
    python benchmarks/gpu_suite.py {predict,sasa} --device cpu --tiny   # tiny sizes: checks the code runs

``predict``: the reference formulation (``benchmarks/reference_model.py``: transformers EsmModel with eager
attention, the pair head materialising the (T, T, 2d) concatenation) against ``seqdance.predict`` with residue +
pair outputs and the residue-only path, all from the same random ESM2-35M-shaped ESMDance weights loaded with
``seqdance.load_model(..., dtype=...)``; batch 1, one window of L tokens (``<cls>``/``<eos>`` included), time =
median of 3 synchronised calls after a warm-up, memory = ``torch.cuda.max_memory_allocated`` (CUDA only).

``sasa``: per-frame SASA of the 3341 protein atoms of adenylate kinase (MDAnalysisTests PSF + DCD): the torch
path on the device (batches of frames) against the numba kernel on every CPU core, with a bit-equality check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

AMINO = "ACDEFGHIKLMNPQRSTVWY"
ENCODER = "35M"  # tiny runs use "8M"
SHARED = Path(os.environ.get("SEQDANCE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, float | None, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the peak CUDA memory (GB) of those calls."""
    result = fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None
    return statistics.median(times), peak, result


def _reference_model(state: dict, encoder: str, dtype: torch.dtype, device: torch.device):
    from reference_model import ReferenceDynamics

    from seqdance.model.config import resolve_encoder_config

    reference = ReferenceDynamics.from_state_dict(state, resolve_encoder_config(encoder))
    return reference.to(device=device, dtype=dtype).eval()


def _time_reference(reference, ids: torch.Tensor, mask: torch.Tensor, device: torch.device,
                    repeats: int) -> tuple[float, float | None]:
    def call():
        with torch.inference_mode():
            return reference(ids, mask)

    seconds, peak, _ = _timed(call, device, repeats)
    return seconds, peak


def _time_seqdance(model, seq: str, pairs: bool, device: torch.device,
                   repeats: int) -> tuple[float, float | None, object]:
    import seqdance

    return _timed(lambda: seqdance.predict(model, [seq], pairs=pairs, window=None, device=device)[0], device,
                  repeats)


def predict_section(device: torch.device, lengths: list[int], repeats: int, encoder: str) -> None:
    import seqdance
    from seqdance.model import DynamicsModel
    from seqdance.tokenizer import encode, pad_batch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    torch.manual_seed(0)
    model = DynamicsModel(encoder, "esmdance")
    with torch.no_grad():  # non-zero head biases, like a trained model
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.02 * torch.randn_like(param))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print(f"device {device}{f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''}, "
          f"torch {torch.__version__}, random ESM2-{encoder}-shaped ESMDance weights, batch 1")
    print(f"{'L':>6} {'configuration':<28} {'dtype':<9} {'ms':>9} {'peak GB':>8} {'vs reference':>13}")
    sequences = {n: "".join(np.random.default_rng(n).choice(list(AMINO), n - 2)) for n in lengths}
    outputs: dict[tuple[int, str], object] = {}
    with tempfile.TemporaryDirectory() as weights:
        model.save_pretrained(weights)
        del model
        for dtype in (torch.float32, torch.bfloat16):
            name = str(dtype).replace("torch.", "")
            reference = _reference_model(state, encoder, dtype, device)
            ours = seqdance.load_model(weights, device=device, dtype=dtype)  # the public entry point
            for length, seq in sequences.items():
                ids, mask = (t.to(device) for t in pad_batch([encode(seq)]))
                ref_s, ref_gb = _time_reference(reference, ids, mask, device, repeats)
                rows = [("reference formulation", ref_s, ref_gb)]
                for label, pairs in (("seqdance, residue + pair", True), ("seqdance, residue only", False)):
                    seconds, gb, result = _time_seqdance(ours, seq, pairs, device, repeats)
                    rows.append((label, seconds, gb))
                    if pairs:
                        outputs[length, name] = result
                for label, seconds, gb in rows:
                    ratio = f"{ref_s / seconds:.1f}x" if label != "reference formulation" else ""
                    mem = f"{gb:8.2f}" if gb is not None else f"{'-':>8s}"
                    print(f"{length:>6} {label:<28} {name:<9} {seconds * 1e3:9.1f} {mem} {ratio:>13}", flush=True)
            del reference, ours
            if device.type == "cuda":
                torch.cuda.empty_cache()
    for length in lengths:
        fp32, bf16 = outputs[length, "float32"], outputs[length, "bfloat16"]
        diff = max(float(np.nanmax(np.abs(fp32[k] - bf16[k]))) for k in ("sasa_mean", "rmsf_nor", "corr"))
        print(f"{length:>6} bf16 vs fp32 (seqdance): max |difference| over sasa_mean, rmsf_nor, corr = {diff:.2e}")


def sasa_section(device: torch.device, n_frames: int, tiny: bool) -> None:
    import mdtraj as md
    import numba

    from seqdance.features.md.sasa import atom_radii, sasa_atoms
    from seqdance.features.md.sasa_torch import sasa_atoms_torch

    if tiny:
        base = SHARED / "reference" / "md"
        if not (base / "3tvj_I.pdb").exists():
            print(f"skipped: {base}/3tvj_I.pdb not found (set SEQDANCE_SHARED_DATA)")
            return
        traj = md.load(str(base / "3tvj_I_10frames.dcd"), top=str(base / "3tvj_I.pdb"))[:n_frames]
        label = "3tvj_I (38 residues, 531 atoms)"
    else:
        import MDAnalysisTests.datafiles as data

        traj = md.load(data.DCD, top=data.PSF)[:n_frames]
        label = "adenylate kinase (214 residues, 3341 atoms)"
    radii = atom_radii(traj.topology)
    sasa_atoms(traj.xyz[:2], radii)  # compile / load the cached kernel
    start = time.perf_counter()
    cpu = sasa_atoms(traj.xyz, radii)
    cpu_s = (time.perf_counter() - start) / traj.n_frames
    on_device, _, result = _timed(lambda: sasa_atoms_torch(traj.xyz, radii, device=device), device, 1)
    same = np.array_equal(result, cpu)
    print(f"SASA of {label}, {traj.n_frames} frames, 960 points per atom")
    print(f"  numba kernel, {numba.get_num_threads()} CPU threads: {cpu_s * 1e3:8.2f} ms/frame")
    print(f"  torch path on {device}:{' ' * max(0, 16 - len(str(device)))}{on_device / traj.n_frames * 1e3:8.2f} "
          f"ms/frame  ({cpu_s * traj.n_frames / on_device:.1f}x the CPU kernel)")
    print(f"  bit-identical to the CPU kernel: {same}")
    if not same:
        raise SystemExit("SASA on the device differs from the CPU kernel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=("predict", "sasa"))
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (checks the code runs, e.g. on CPU)")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="token lengths (default 256 1024)")
    parser.add_argument("--frames", type=int, default=None, help="SASA frames (default 98, tiny 1)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"skipped: device {args.device} requested but CUDA is not available in this torch build / machine")
        return
    if args.section == "predict":
        lengths = args.lengths or ([24] if args.tiny else [256, 1024])
        predict_section(device, lengths, 1 if args.tiny else 3, "8M" if args.tiny else ENCODER)
    else:
        sasa_section(device, args.frames or (1 if args.tiny else 98), args.tiny)


if __name__ == "__main__":
    main()
