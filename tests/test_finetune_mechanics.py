"""Mechanics of fine-tuning: what each method changes, saving and loading, exact resume, metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint
from _finetune_data import random_sequences, write_assay, write_protein_table, write_residue_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    sequences = random_sequences(40, 12, 24, seed=3)
    names = [f"p{i}" for i in range(40)]
    values = [s.count("K") - s.count("E") + 0.1 * i / 40 for i, s in enumerate(sequences)]
    residue = [np.array([1.0 if c in "KR" else 0.0 for c in s]) for s in sequences]
    for r in residue:
        r[::5] = np.nan
    return {"root": root, "sequences": sequences,
            "dyn": str(write_released_checkpoint(root / "dyn", "tiny", "seqdance", seed=1)),
            "esm": str(write_esm2_mlm_checkpoint(root / "esm", "tiny", seed=2)),
            "protein": str(write_protein_table(root / "protein.csv", names, sequences, values)),
            "residue": str(write_residue_table(root / "residue.csv", names, sequences, residue))}


def _runner(data, **options):
    from seqdance.finetuning.config import FinetuneConfig
    from seqdance.finetuning.run import Runner

    base = dict(labels=[data["protein"]], task="protein", target="y", models=[data["dyn"]], progress=False,
                output_dir=str(data["root"] / "unused"), epochs=2, batch_size=8)
    runner = Runner(FinetuneConfig.from_dict({**base, **options}))
    runner.load()
    return runner


@pytest.mark.parametrize("method", ["head", "lora", "full"])
def test_what_each_method_trains(data, method, one_torch_thread):
    """head and lora leave every base parameter bitwise unchanged and give gradients only to the head (and the
    adapters); full changes the encoder."""
    from seqdance.finetuning.loop import train_job
    from seqdance.finetuning.model import count_parameters
    from seqdance.finetuning.run import Combo
    from seqdance.finetuning.splits import make_folds

    runner = _runner(data, with_dynamics="yes")
    pristine = {n: p.detach().clone() for n, p in runner.bases["dyn"].named_parameters()}
    fold = make_folds(runner.labels, "kfold", folds=2)[0][0]
    combo = Combo("dyn", method, True)
    model = runner.build(combo, "job", fold.train)
    trainable, total = count_parameters(model)
    train_job(model, runner.inputs(combo, model), fold.train, fold.valid, fold.test, runner.settings(method),
              key="job", label="test", out_dir=None)
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {n for n, p in model.named_parameters() if n.startswith("head.") or "lora_" in n}
    base_now = {n.removeprefix("base.").replace(".base_layer", ""): p.detach()
                for n, p in model.named_parameters() if n.startswith("base.") and "lora_" not in n}
    changed = {n for n, p in base_now.items() if not torch.equal(p, pristine[n])}
    head_params = sum(p.numel() for p in model.head.parameters())
    if method == "full":
        assert changed and all(n.startswith("esm2.") for n in changed)
        assert trainable > head_params
        return
    assert changed == set()
    assert with_grad == expected and with_grad
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in expected)
    if method == "head":
        assert trainable == head_params
    else:  # rank-8 adapters on the query, key, value and output projections of both layers
        assert trainable == head_params + 2 * 4 * 8 * (32 + 32)
    assert total > trainable


@pytest.mark.parametrize("method,merge", [("head", False), ("lora", False), ("lora", True)])
def test_save_load_gives_identical_predictions(data, tmp_path, method, merge, one_torch_thread):
    import seqdance
    from seqdance.finetuning.files import load_finetuned
    from seqdance.finetuning.predict import predict_targets

    result = seqdance.finetune(labels=data["protein"], task="protein", target="y", model=data["dyn"], method=method,
                               with_dynamics="yes", epochs=2, folds=2, batch_size=8, baselines=False, keep="best",
                               merge_lora=merge, progress=False, output_dir=str(tmp_path / "run"))
    seqs = data["sequences"][:6]
    before = np.stack(predict_targets(result.model, seqs))
    loaded = seqdance.load_model(str(tmp_path / "run" / "model"))
    assert type(loaded).__name__ == "FinetunedModel"
    after = np.stack(predict_targets(loaded, seqs))
    files = sorted(p.name for p in (tmp_path / "run" / "model").iterdir())
    if method == "lora" and not merge:
        assert "adapter.safetensors" in files and "base" not in files
        np.testing.assert_array_equal(before, after)
    elif merge:
        assert "base" in files
        np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(before, after)
    again = np.stack(predict_targets(load_finetuned(tmp_path / "run" / "model"), seqs))
    np.testing.assert_array_equal(after, again)


def test_kill_during_an_epoch_and_resume_gives_the_same_weights(data, tmp_path):
    """kill -9 in the middle of a job, then --resume: the kept model is bitwise the uninterrupted run's."""
    args = ["finetune", "--labels", data["protein"], "--target", "y", "--model", data["dyn"], "--method", "lora",
            "--epochs", "4", "--folds", "2", "--batch-size", "6", "--no-baselines", "--keep", "best", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run([sys.executable, "-m", "seqdance.cli.main", *args, "-o", str(tmp_path / "whole")],
                           capture_output=True, text=True, env=env)
    assert whole.returncode == 0, whole.stderr
    # the trainable count is printed: the head (4,417) and rank-8 adapters on 4 projections of 2 layers (4,096)
    assert "lora kfold:0: training 8,513 of 34,529 parameters" in whole.stderr
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "seqdance.cli.main", *args, "-o", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # the second fold's job has written its second epoch's checkpoint
            if list(cut.glob("jobs/*/lora/kfold/all/kfold_1/checkpoints/update_00000002.pt")):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the run did not reach its second job")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (cut / "model").exists()
    resumed = subprocess.run([sys.executable, "-m", "seqdance.cli.main", *args, "--resume", "-o", str(cut)],
                             capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("head.safetensors", "adapter.safetensors"):
        assert (cut / "model" / name).read_bytes() == (tmp_path / "whole" / "model" / name).read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(cut / "predictions.csv"),
                                  pd.read_csv(tmp_path / "whole" / "predictions.csv"))


def test_metrics_equal_scikit_learn():
    from scipy.stats import pearsonr, spearmanr
    from sklearn import metrics as sk

    from seqdance.finetuning.metrics import classification_metrics, regression_metrics

    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    p[:20] = p[20:40]  # ties
    ours = regression_metrics(y, p)
    assert abs(ours["spearman"] - spearmanr(y, p).statistic) <= 1e-9
    assert abs(ours["pearson"] - pearsonr(y, p).statistic) <= 1e-9
    assert abs(ours["mse"] - sk.mean_squared_error(y, p)) <= 1e-9
    assert abs(ours["mae"] - sk.mean_absolute_error(y, p)) <= 1e-9
    for k in (2, 3, 5):
        truth = rng.integers(0, k, size=300)
        proba = rng.dirichlet(np.ones(k), size=300)
        proba[:30] = proba[30:60]
        got = classification_metrics(truth, proba)
        pred = proba.argmax(1)
        auroc = sk.roc_auc_score(truth, proba[:, 1]) if k == 2 else sk.roc_auc_score(truth, proba, multi_class="ovr")
        want = {"accuracy": sk.accuracy_score(truth, pred),
                "balanced_accuracy": sk.balanced_accuracy_score(truth, pred),
                "macro_f1": sk.f1_score(truth, pred, average="macro"), "auroc": auroc,
                "mcc": sk.matthews_corrcoef(truth, pred)}
        for name, value in want.items():
            assert abs(got[name] - value) <= 1e-9, (k, name, got[name], value)


def test_residue_and_mutant_tasks_end_to_end(data, tmp_path, one_torch_thread):
    """Every output of a residue-classification run and a mutant run (three ProteinGym schemes), and the fine-tuned
    model in predict and score."""
    import seqdance

    res = seqdance.finetune(labels=data["residue"], task="residue", target="y", classification=True,
                            model=[data["dyn"], f"esm2={data['esm']}"], method="head", with_dynamics="both",
                            dynamics_model=data["dyn"], epochs=2, folds=2, progress=False,
                            output_dir=str(tmp_path / "res"))
    out = tmp_path / "res"
    for name in ("metrics.csv", "predictions.csv", "summary.md", "summary.csv", "learning_curves.png",
                 "predicted_vs_true.png", "model/finetune.json"):
        assert (out / name).is_file(), name
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["metric"]) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc", "mcc"}
    methods = set(metrics["method"])
    assert {"head", "ridge:embeddings", "ridge:length", "ridge:composition"} <= methods
    predictions = pd.read_csv(out / "predictions.csv")
    labelled = sum(int(np.sum(~np.isnan(np.array(v.split(), dtype=float))))
                   for v in pd.read_csv(data["residue"])["y"])
    head_rows = predictions[(predictions["method"] == "head") & (predictions["model"] == "esm2")
                            & (predictions["dynamics"])]
    assert len(head_rows) == labelled  # every labelled residue once, unlabelled ones never
    assert res.model is not None and res.model.info["task"] == "residue"

    table, fasta = write_assay(tmp_path / "assay")
    mut = seqdance.finetune(labels=str(table), wild_types=str(fasta), task="mutant", model=data["dyn"],
                            method="head", epochs=2, progress=False,
                            split="fold_random_5,fold_modulo_5,fold_contiguous_5",
                            output_dir=str(tmp_path / "mut"))
    for scheme in ("fold_random_5", "fold_modulo_5", "fold_contiguous_5"):
        layout = pd.read_csv(tmp_path / "mut" / "proteingym" / scheme / "ASSAY_TEST.csv")
        assert {"mutant", "mutated_sequence", "DMS_score", scheme, "ridge:ohe", "dyn/head"} <= set(layout.columns)
        assert layout[scheme].between(0, 4).all() and layout["dyn/head"].notna().all()
    assert set(mut.metrics["scheme"]) == {"fold_random_5", "fold_modulo_5", "fold_contiguous_5"}
    from seqdance.cli.main import main

    wild_type = Path(fasta).read_text().split()[1]
    assert main(["score", "--model", str(tmp_path / "mut" / "model"), "--target", "DMS_score", "--sequence",
                 wild_type, "--saturation", "--properties", "sasa_mean", "-o", str(tmp_path / "scan.csv"), "-q"]) == 0
    scores = pd.read_csv(tmp_path / "scan.csv")
    assert {"score", "change_sasa_mean", "finetuned_DMS_score"} <= set(scores.columns)
    from seqdance.finetuning.predict import predict_targets

    first = scores.iloc[0]
    values = predict_targets(mut.model, [wild_type, wild_type.replace(wild_type[0], first["mutant"][-1], 1)])
    assert abs(first["finetuned_DMS_score"] - (float(values[1]) - float(values[0]))) < 1e-6
    fasta_in = tmp_path / "q.fasta"
    fasta_in.write_text(f">w\n{wild_type}\n")
    assert main(["predict", str(fasta_in), "--model", str(tmp_path / "res" / "model"), "-o", str(tmp_path / "pred"),
                 "-q", "--no-pairs"]) == 0
    arrays = np.load(tmp_path / "pred" / "w.targets.npz")
    assert arrays["y"].shape == (len(wild_type), 2)
    assert (tmp_path / "pred" / "targets_residues.csv").is_file()


def test_non_finite_loss_stops_the_job_naming_the_batch(data, one_torch_thread):
    from seqdance.errors import NonFiniteError
    from seqdance.finetuning.loop import train_job
    from seqdance.finetuning.run import Combo
    from seqdance.finetuning.splits import make_folds

    runner = _runner(data)
    fold = make_folds(runner.labels, "kfold", folds=2)[0][0]
    combo = Combo("dyn", "head", False)
    model = runner.build(combo, "job", fold.train)
    with torch.no_grad():
        model.head.mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"test, epoch 1: the loss or a gradient is NaN or infinite for the batch "
                                             r"holding p\d+"):
        train_job(model, runner.inputs(combo, model), fold.train, fold.valid, fold.test, runner.settings("head"),
                  key="job", label="test", out_dir=None)
    settings = runner.settings("head")
    settings.on_nonfinite = "skip"
    result = train_job(model, runner.inputs(combo, model), fold.train, fold.valid, fold.test, settings, key="job",
                       label="test", out_dir=None)
    assert result.skipped_updates == 2 * -(-int(fold.train.sum()) // 8)  # every update of both epochs skipped
