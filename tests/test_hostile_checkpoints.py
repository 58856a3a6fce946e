"""Hostile checkpoints: no file runs code through any command, ``latest`` stays in its folder, and a truncated
latest checkpoint falls back to the previous complete one (hostile-input audit, finding 1)."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path

import pytest
import torch
from _checkpoints import write_released_checkpoint
from test_train_data import write_synthetic_store
from test_train_resume import tiny_config

from seqdance.cli.main import main
from seqdance.errors import SeqdanceError, UnsafeFileError
from seqdance.model.files import torch_load_safe
from seqdance.train import checkpoint as ckpt
from seqdance.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]


class CodeOnLoad:
    """Unpickling this calls ``open(marker, "w")``: loading the file would create the marker (code ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def write_crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file shaped like a training checkpoint whose unpickling would run code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, "update": 2, "model": {"w": torch.zeros(2)}, "rng": [CodeOnLoad(marker)]}, path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("hostile") / "s.h5", per_group=3, n_test=1, max_len=20)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_crafted_pickle_runs_nothing_through_any_command(store: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code_ran"
    crafted = write_crafted_checkpoint(tmp_path / "update_00000002.pt", marker)

    # the loader itself
    with pytest.raises(UnsafeFileError, match="refused") as caught:
        torch_load_safe(crafted)
    assert "weights_only" not in str(caught.value)
    assert isinstance(caught.value, SeqdanceError)

    # train --resume with the crafted file as the run's latest checkpoint
    out = tmp_path / "run"
    config = tiny_config(store, out, total_updates=3, checkpoint_interval=1)
    config.to_yaml(tmp_path / "train.yaml")
    run_ckpt = write_crafted_checkpoint(out / "checkpoints" / "update_00000002.pt", marker)
    (run_ckpt.parent / "latest").write_text(run_ckpt.name + "\n")
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--resume", "-q"]) == 1
    err = _error_line(capsys)
    assert "refused" in err and "update_00000002.pt" in err

    # predict, evaluate and score with the crafted file as the model
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">p1\nMKTAYIAKQR\n")
    assert main(["predict", str(fasta), "-o", str(tmp_path / "pred"), "--model", str(crafted),
                 "--model-select", "seqdance", "--encoder", "tiny", "-q"]) == 1
    assert "refused" in _error_line(capsys)
    assert main(["evaluate", "--model", str(crafted), "--model-select", "seqdance", "--store", str(store),
                 "-o", str(tmp_path / "eval"), "-q", "--device", "cpu"]) == 1
    assert "refused" in _error_line(capsys)
    assert main(["score", "--model", str(crafted), "--sequence", "MKTAYIAKQR", "--saturation",
                 "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 1
    assert "refused" in _error_line(capsys)

    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").glob("*.npz"))


def test_no_message_suggests_unsafe_loading() -> None:
    for path in (REPO / "src").rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text.replace(" ", ""), path


def test_latest_pointer_is_confined_to_the_run_folder(store: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(store, out, total_updates=2, checkpoint_interval=1, **{"optim.warmup_updates": 0})).fit()
    outside = write_crafted_checkpoint(tmp_path / "elsewhere" / "update_00000009.pt", tmp_path / "marker")
    pointer = out / "checkpoints" / "latest"
    for text in (f"../../elsewhere/{outside.name}", str(outside), "update_00000009.pt/../../x"):
        pointer.write_text(text + "\n")
        with caplog.at_level(logging.WARNING, logger="seqdance.train.checkpoint"):
            found = ckpt.latest_checkpoint(out)
        assert found == out / "checkpoints" / "update_00000002.pt"
        assert "not a checkpoint file of this folder" in caplog.text
        caplog.clear()
    # a checkpoint file that is a link leading out of the folder is not used either
    link = out / "checkpoints" / "update_00000009.pt"
    link.symlink_to(outside)
    pointer.write_text(link.name + "\n")
    with caplog.at_level(logging.WARNING, logger="seqdance.train.checkpoint"):
        assert ckpt.latest_checkpoint(out) == out / "checkpoints" / "update_00000002.pt"
    assert "leads outside" in caplog.text
    assert not (tmp_path / "marker").exists()


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(store: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    settings = {"total_updates": 4, "checkpoint_interval": 1, "keep_checkpoints": 3, "optim.warmup_updates": 0}
    Trainer(tiny_config(store, out, **settings)).fit(stop_after=3)
    newest = out / "checkpoints" / "update_00000003.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # e.g. the disk filled up while it was copied
    resumed = Trainer(tiny_config(store, out, **settings))
    with caplog.at_level(logging.WARNING, logger="seqdance.train.checkpoint"):
        assert resumed.resume()
    assert resumed.update == 2
    assert "update_00000003.pt" in caplog.text and "previous checkpoint" in caplog.text
    assert resumed.fit().last_update == 4
    # nothing usable at all: an error naming what was tried, never a traceback from torch
    for path in (out / "checkpoints").glob("update_*.pt"):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(SeqdanceError, match="no usable checkpoint"):
        Trainer(tiny_config(store, out, **settings)).resume()


def test_training_checkpoints_load_without_unsafe_globals(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(store, out, total_updates=1, checkpoint_interval=1, **{"optim.warmup_updates": 0})).fit()
    state = ckpt.load_checkpoint(out / "checkpoints" / "update_00000001.pt")  # weights_only=True inside
    assert state["update"] == 1 and isinstance(state["rng"][0]["python"], tuple)


def test_nonfinite_weights_are_refused_naming_the_tensor(tmp_path: Path, store: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    model_dir = write_released_checkpoint(tmp_path / "nan_model", "tiny", "esmdance", seed=1)

    weights = load_file(str(model_dir / "model.safetensors"))
    key = next(k for k in weights if k.startswith("res_pred_nn") and k.endswith("bias"))
    weights[key] = weights[key].clone()
    weights[key][0] = float("nan")
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">p1\nMKTAYIAKQR\n")
    assert main(["predict", str(fasta), "-o", str(tmp_path / "pred"), "--model", str(model_dir), "-q"]) == 1
    err = _error_line(capsys)
    assert key in err and "NaN or infinite" in err
    assert not list((tmp_path / "pred").glob("*.npz"))
    assert main(["evaluate", "--model", str(model_dir), "--store", str(store), "-o", str(tmp_path / "ev"), "-q",
                 "--device", "cpu"]) == 1
    assert key in _error_line(capsys)
    assert main(["score", "--model", str(model_dir), "--sequence", "MKTAYIAKQR", "--saturation",
                 "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 1
    assert key in _error_line(capsys)
    assert not (tmp_path / "s.csv").exists()


def test_truncated_safetensors_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = write_released_checkpoint(tmp_path / "cut", "tiny", "esmdance", seed=2)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">p1\nMKTAYIAKQR\n")
    assert main(["predict", str(fasta), "-o", str(tmp_path / "pred"), "--model", str(model_dir), "-q"]) == 1
    err = _error_line(capsys)
    assert str(weights) in err and "not a readable safetensors file" in err
