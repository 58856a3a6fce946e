"""Non-finite values never pass silently: stores never receive them, ``dataset check`` names them, training stops
at the first one (or skips it, counted), evaluate / predict / score refuse them (hostile-input audit, finding 2)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from test_train_data import write_synthetic_store
from test_train_resume import tiny_config

from seqdance import schema
from seqdance.cli.main import main
from seqdance.errors import NonFiniteError, SeqdanceError
from seqdance.store import DynamicsStore, StoredProtein, StoreWriter
from seqdance.train import checkpoint as ckpt
from seqdance.train.evaluate import summarise
from seqdance.train.trainer import Trainer, read_log

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The stored MD residue channel poisoned below, and the property it belongs to.
POISON_CHANNEL = 5
POISON_PROPERTY = schema.property_of_channel("residue", POISON_CHANNEL, "md").name


def poison(store: Path, name: str, *, token: int = 3, value: float = float("nan")) -> None:
    """Write a NaN into one stored target in place (what an old or damaged store may hold)."""
    with h5py.File(store, "r+") as fh:
        fh[f"{name}_res_feature"][token, POISON_CHANNEL] = value


@pytest.fixture
def nan_store(tmp_path: Path) -> Path:
    path = write_synthetic_store(tmp_path / "nan.h5", per_group=3, n_test=1, max_len=20)
    poison(path, "md_1")
    poison(path, "md_3")  # md_3 is the test protein of group md
    return path


@pytest.fixture
def weights_csv(tmp_path: Path) -> Path:
    """Loss weights from a clean store of the same shape (computing them from the poisoned one is refused)."""
    from seqdance.train.weights import compute_store_statistics, write_statistics

    clean = write_synthetic_store(tmp_path / "clean_for_weights.h5", per_group=3, n_test=1, max_len=20)
    with DynamicsStore.open(clean) as store:
        stats = compute_store_statistics([store])
    return write_statistics(stats, tmp_path / "weights.csv")["weights"]


def test_loss_weight_statistics_refuse_nan_targets(nan_store: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loss-weights", "--store", str(nan_store), "-o", str(tmp_path / "w.csv"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "'md_1'" in err and POISON_PROPERTY in err and not (tmp_path / "w.csv").exists()


def test_store_writer_refuses_nonfinite_targets(tmp_path: Path) -> None:
    seq = "MKTAYIAK"
    n = len(seq) + 2
    res = np.full((n, schema.stored_width("residue", "nma")), 0.5, dtype=np.float32)
    pair = np.full((n, n, schema.stored_width("pair", "nma")), 0.1, dtype=np.float32)
    pair[4, 6, 1] = np.inf
    protein = StoredProtein("p", seq, "proteinflow_pdb", "nma", "train", "nma", res, pair)
    with pytest.raises(NonFiniteError, match=r"protein 'p'.*nma_pair2: 1 NaN/inf value\(s\), first at token pair "
                                             r"\(4, 6\)"), StoreWriter(tmp_path / "x.h5") as writer:
        writer.add(protein)
    assert not (tmp_path / "x.h5").exists()


def test_builder_fails_the_protein_naming_the_property(tmp_path: Path, shared_data: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import seqdance.features.nma.extract as nma
    from seqdance.store.builder import build_store, failures_path

    structures = sorted((shared_data / "structures" / "bioemu_reference").rglob("*.pdb"))[:2]
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"name": ["good", "bad"], "source": "proteinflow_pdb",
                  "structure": [str(p) for p in structures]}).to_csv(manifest, index=False)
    real = nma.extract_nma

    def nan_for_second(structure, **kwargs):  # a feature computation that returns NaN for one input
        features = real(structure, **kwargs)
        if str(getattr(structure, "source", structure)) == str(structures[1]):
            features["nma_res2"] = np.where(np.arange(len(features["nma_res2"])) == 2, np.nan, features["nma_res2"])
        return features

    monkeypatch.setattr(nma, "extract_nma", nan_for_second)
    report = build_store(manifest, tmp_path / "s.h5", workers=0)
    assert (report.computed, report.failed) == (1, 1)
    error = report.failures[0]["error"]
    assert report.failures[0]["name"] == "bad" and "NonFiniteError" in error and "nma_res2" in error
    assert "residue 3" in error
    with DynamicsStore.open(tmp_path / "s.h5") as store:
        assert store.names == ["good"]
    assert "nma_res2" in failures_path(tmp_path / "s.h5").read_text()


def test_dataset_check_names_protein_and_property(nan_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "check", str(nan_store), "-q"]) == 1
    out = capsys.readouterr().out
    assert f"md_1: [nan] non-finite target values: {POISON_PROPERTY}: 1 NaN/inf value(s), first at token 3" in out
    assert f"md_3: [nan] non-finite target values: {POISON_PROPERTY}" in out
    assert sum(line.split(": [")[1].startswith("nan]") for line in out.splitlines() if ": [" in line) == 2


def test_merge_refuses_nonfinite_inputs_and_existing_outputs(nan_store: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.h5"
    assert main(["dataset", "merge", str(nan_store), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "md_1" in err and "md_3" in err and POISON_PROPERTY in err and "nothing merged" in err
    assert not out.exists() and not list(tmp_path.glob(".merged.h5.*"))

    clean = write_synthetic_store(tmp_path / "clean.h5", per_group=2, n_test=0, max_len=12)
    out.write_bytes(b"an existing file the user cares about")
    assert main(["dataset", "merge", str(clean), "-o", str(out), "-q"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"an existing file the user cares about"
    assert main(["dataset", "merge", str(clean), "-o", str(out), "-q", "--overwrite"]) == 0
    with DynamicsStore.open(out) as merged:
        assert len(merged) == 6


def test_training_stops_at_the_first_nonfinite_update(nan_store: Path, weights_csv: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    config = tiny_config(nan_store, out, total_updates=6, checkpoint_interval=1,
                         **{"optim.warmup_updates": 0, "data.loss_weights": str(weights_csv)})
    config.to_yaml(tmp_path / "train.yaml")
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "training stopped: update " in err and "group md" in err and "'md_1'" in err and POISON_PROPERTY in err
    assert not (out / "model").exists()  # nothing is saved from a poisoned update
    for _, path in ckpt.list_checkpoints(out):  # checkpoints before it hold finite weights
        assert all(torch.isfinite(v).all() for v in ckpt.load_checkpoint(path)["model"].values()
                   if v.is_floating_point())
    assert all(isinstance(r.get("loss"), float) for r in read_log(out / "train_log.jsonl") if "loss" in r)


def test_skip_policy_skips_and_counts(nan_store: Path, weights_csv: Path, tmp_path: Path) -> None:
    config = tiny_config(nan_store, tmp_path / "run", total_updates=6, checkpoint_interval=0,
                         on_nonfinite="skip", **{"optim.warmup_updates": 0, "data.loss_weights": str(weights_csv)})
    trainer = Trainer(config)
    result = trainer.fit()
    assert result.last_update == 6 and trainer.nonfinite_skipped >= 1
    log = [r for r in read_log(tmp_path / "run" / "train_log.jsonl") if "loss" in r]
    assert log[-1]["nonfinite_skipped"] == trainer.nonfinite_skipped
    assert any(r["loss"] is None for r in log)  # the skipped update's loss is logged as null, not as a number
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nonfinite_gradient_is_named(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "s.h5", per_group=3, n_test=0, max_len=16)
    trainer = Trainer(tiny_config(store, tmp_path / "run", total_updates=2, **{"optim.warmup_updates": 0}))
    from seqdance.train.data import micro_batch_loader

    batches = micro_batch_loader(trainer.dataset, trainer.plan, 1, 1)
    trainer.forward_backward(1, batches)
    name, param = next((n, p) for n, p in trainer.model.named_parameters() if p.grad is not None)
    param.grad[0] = float("inf")
    problem = trainer.nonfinite_problem(1)
    assert problem is not None and f"the gradient of {name}" in problem


def test_evaluate_refuses_nan_targets_and_never_reports_zero(nan_store: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from _checkpoints import write_released_checkpoint

    model = write_released_checkpoint(tmp_path / "m", "tiny", "seqdance", seed=4)
    assert main(["evaluate", "--model", str(model), "--store", str(nan_store), "-o", str(tmp_path / "ev"), "-q",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "'md_3'" in err and POISON_PROPERTY in err and "non-finite targets" in err
    assert not (tmp_path / "ev" / "summary.md").exists()
    # a group whose every property lacks valid entries has no total: NaN (shown as –), never 0.0
    rows = pd.DataFrame([{"group": "nma", "name": "x", "tokens": 5,
                          **{f"rmse/{p.name}": np.nan for p in schema.properties_of_kind("nma")},
                          **{f"r_{p.name}": np.nan for p in schema.properties_of_kind("nma")}}])
    totals = summarise(rows).group_losses()
    assert np.isnan(totals["nma"])


def test_predictions_that_are_not_finite_are_refused(tmp_path: Path) -> None:
    from _checkpoints import random_dynamics_model

    from seqdance.inference.predict import predict

    model = random_dynamics_model("tiny", "esmdance", seed=5)
    with torch.no_grad():  # weights broken after loading (loading itself refuses them)
        for name, param in model.named_parameters():
            if name.startswith("res_pred_nn") and name.endswith("bias"):
                param.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"sequence 'p1': the model predicts non-finite values"):
        predict(model, ["MKTAYIAKQR"], ids=["p1"], pairs=False)


def test_json_log_never_holds_nan(tmp_path: Path) -> None:
    from seqdance.train.trainer import _Logger

    logger = _Logger(tmp_path / "log.jsonl", tensorboard=False)
    logger.write({"update": 1, "loss": float("nan")})
    logger.close()
    assert json.loads((tmp_path / "log.jsonl").read_text())["loss"] is None


def test_user_errors_share_one_base() -> None:
    assert issubclass(NonFiniteError, SeqdanceError) and issubclass(NonFiniteError, ValueError)


def test_nonfinite_scores_are_refused_naming_column_and_variant() -> None:
    from seqdance.scoring.mutations import parse_mutant
    from seqdance.scoring.scorer import check_finite_scores

    variants = [parse_mutant(m, "MKTAY") for m in ("M1A", "K2L")]
    check_finite_scores(pd.DataFrame({"change_rmsf_nor": [0.1, 0.2]}), variants, "the dynamics model")
    with pytest.raises(NonFiniteError, match=r"non-finite change_rmsf_nor for variant 'K2L'"):
        check_finite_scores(pd.DataFrame({"change_rmsf_nor": [0.1, np.inf]}), variants, "the dynamics model")


def test_predict_recomputes_a_truncated_output(tmp_path: Path) -> None:
    from _checkpoints import write_released_checkpoint

    model = write_released_checkpoint(tmp_path / "m", "tiny", "esmdance", seed=1)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">p1\nMKTAYIAK\n")
    out = tmp_path / "out"
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(model), "-q"]) == 0
    data = (out / "p1.npz").read_bytes()
    (out / "p1.npz").write_bytes(data[: len(data) // 2])
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(model), "-q"]) == 0
    with np.load(out / "p1.npz") as arrays:
        assert str(arrays["id"]) == "p1"
