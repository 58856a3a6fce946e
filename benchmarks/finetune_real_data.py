"""Fine-tuning on real labels: the numbers of docs/finetune.md ("Real data"), run once, not a test.

Models: a small SeqDance trained with the walkthrough's store (docs/walkthrough.md, configs/tiny_cpu.yaml; pass its
``model`` folder) and a random ESM2-8M-shaped encoder (seeded; plain ESM2 layout). Predictors, all on the same
folds: ProteinGym's one-hot ridge, frozen embeddings + ridge, the head, LoRA, each with and without the dynamics
inputs (for the ESM2-shaped model they come from the small SeqDance), and the length / composition ridges.

* DMS: five assays of the shared dev set (the short ones), a seeded subset of --max-rows mutants each, under
  fold_random_5, fold_modulo_5 and fold_contiguous_5;
* stability: the shared Tsuboyama ΔG values (protein task, ``dg_exp``), five folds of sequence-identity clusters
  (mutants of one wild type stay together).

    python benchmarks/finetune_real_data.py --seqdance tour/runs/tiny_cpu/model -o ft_real/ [--max-rows 300]

Prints one Markdown table per data set (mean over assays of the per-assay mean over folds) and keeps every run's
outputs under ``-o``. LoRA on the ESM2-8M-shaped model runs only with ``--lora-esm2`` (its backward costs minutes
per epoch on a 2-core CPU; the docs give the measured cost).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

ASSAYS = ("IF1_ECOLI_Kelsic_2016", "TAT_HV1BR_Fernandes_2016", "CCDB_ECOLI_Adkar_2012", "SUMO1_HUMAN_Weile_2017",
          "RL401_YEAST_Mavor_2016")
SCHEMES = ("fold_random_5", "fold_modulo_5", "fold_contiguous_5")


def shared_data() -> Path:
    import os

    env = os.environ.get("SEQDANCE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def random_esm2_8m(folder: Path, seed: int = 0) -> Path:
    import torch

    from seqdance.model import EsmMaskedLM

    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(seed)
        EsmMaskedLM("8M").save_pretrained(folder)
    return folder


def markdown(frame: pd.DataFrame) -> str:
    from seqdance.io_utils import markdown_table

    return markdown_table(frame.reset_index(), "{:.3f}")


def table(summary: pd.DataFrame, metric: str = "spearman") -> pd.DataFrame:
    """Per scheme, mean over assays of each predictor's mean over folds."""
    summary = summary.copy()
    summary["predictor"] = [
        (f"{m}/" if m != "-" else "") + f"{meth}{'+dyn' if d else ''}"
        for m, meth, d in zip(summary["model"], summary["method"], summary["dynamics"])]
    wide = summary.pivot_table(index="predictor", columns="scheme", values=f"{metric}_mean", aggfunc="mean")
    return wide.reindex(columns=[c for c in (*SCHEMES, "identity") if c in wide.columns])


def main() -> None:
    import seqdance

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seqdance", required=True, help="the walkthrough's trained tiny SeqDance (model folder)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--max-rows", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--assays", nargs="+", default=list(ASSAYS))
    parser.add_argument("--lora-esm2", action="store_true",
                        help="also LoRA on the ESM2-8M-shaped model (hours on a CPU: see the docs' costs)")
    parser.add_argument("--skip-stability", action="store_true")
    args = parser.parse_args()
    data = shared_data()
    out = args.output
    esm2 = random_esm2_8m(out / "esm2_8M_random")
    models = [f"seqdance_tiny={args.seqdance}", f"esm2_8M_random={esm2}"]
    common = dict(epochs=args.epochs, patience=3, batch_size=16, with_dynamics="both", dynamics_model=args.seqdance,
                  keep="none", progress=False, seed=0, cache_dir=str(out / "cache"))
    runs = [(models[0], ["head", "lora"]), (models[1], ["head", "lora"] if args.lora_esm2 else ["head"])]
    frames, timings = [], []
    for assay in args.assays:
        for scheme in SCHEMES:
            for model, methods in runs:
                began = time.perf_counter()
                result = seqdance.finetune(
                    labels=str(data / "proteingym_single_dev" / "mutant" / f"{assay}.csv"),
                    wild_types=str(data / "proteingym_single_dev" / "fasta" / f"{assay}.fasta"), task="mutant",
                    model=model, method=methods, split=scheme, max_rows=args.max_rows,
                    output_dir=str(out / "dms" / assay / scheme / model.split("=")[0]), resume=True, **common)
                frames.append(result.summary)
                timings.append({"data": assay, "scheme": scheme, "model": model.split("=")[0],
                                "seconds": time.perf_counter() - began})
                print(f"{assay} {scheme} {model.split('=')[0]}: {timings[-1]['seconds']:.0f} s", flush=True)
    summary = pd.concat(frames, ignore_index=True)
    summary = summary.drop_duplicates(["scheme", "unit", "model", "method", "dynamics"])
    summary.to_csv(out / "dms_summary.csv", index=False)
    print(f"\n## DMS: {len(args.assays)} assays, ≤{args.max_rows} mutants each, ≤{args.epochs} epochs (patience 3)\n")
    print(markdown(table(summary)))
    if not args.skip_stability:
        stability = data / "stability" / "tsuboyama_bioemu" / "system_info.csv"
        frame = pd.read_csv(stability)
        labels = out / "stability_dg.csv"
        frame[["name", "sequence", "dg_exp"]].to_csv(labels, index=False)
        parts = []
        for model, methods in runs:
            began = time.perf_counter()
            result = seqdance.finetune(labels=str(labels), task="protein", target="dg_exp", model=model,
                                       method=methods, split="identity", identity=0.5, folds=5,
                                       output_dir=str(out / "stability" / model.split("=")[0]), resume=True, **common)
            timings.append({"data": "stability", "scheme": "identity", "model": model.split("=")[0],
                            "seconds": time.perf_counter() - began})
            parts.append(result.summary)
        stab = pd.concat(parts, ignore_index=True).drop_duplicates(["scheme", "unit", "model", "method", "dynamics"])
        stab.to_csv(out / "stability_summary.csv", index=False)
        print("\n## Stability (Tsuboyama ΔG, 364 sequences of 97 wild types, 5 identity-cluster folds)\n")
        print(markdown(table(stab)))
    pd.DataFrame(timings).to_csv(out / "timings.csv", index=False)
    print(f"\ntotal {sum(t['seconds'] for t in timings) / 60:.1f} min")


if __name__ == "__main__":
    main()
