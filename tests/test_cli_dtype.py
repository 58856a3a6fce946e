"""``--dtype`` on the commands that run a model (issue 21, finding 27): float32 (the default) gives exactly the
results of before, bfloat16 and float16 run and stay close, and outputs of another dtype are never reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint

from seqdance.cli.main import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEQUENCES = {"a": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "b": "GSSGSSEEDDKKRRSPSPAVLLK"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return (write_released_checkpoint(root / "dyn", "tiny", "esmdance", seed=5),
            write_esm2_mlm_checkpoint(root / "esm", "tiny", seed=6))


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{k}\n{v}\n" for k, v in SEQUENCES.items()))
    return path


def _arrays(folder: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(folder / f"{name}.npz") as data:
        return {k: data[k] for k in data.files if data[k].dtype.kind == "f"}


def test_predict_float32_is_the_default_bit_for_bit_and_half_precisions_stay_close(tmp_path, fasta, models) -> None:
    dyn, _ = models
    base = ["predict", str(fasta), "--model", str(dyn), "-q"]
    assert main([*base, "-o", str(tmp_path / "default")]) == 0
    assert main([*base, "-o", str(tmp_path / "f32"), "--dtype", "float32"]) == 0
    for name in SEQUENCES:
        default, f32 = _arrays(tmp_path / "default", name), _arrays(tmp_path / "f32", name)
        assert default.keys() == f32.keys() and all(np.array_equal(default[k], f32[k]) for k in default)
    for dtype, tolerance in (("bfloat16", 0.1), ("float16", 0.02)):
        assert main([*base, "-o", str(tmp_path / dtype), "--dtype", dtype]) == 0
        for name in SEQUENCES:
            half, f32 = _arrays(tmp_path / dtype, name), _arrays(tmp_path / "f32", name)
            assert all(half[k].dtype == np.float32 for k in half)  # written as float32 whatever ran
            worst = max(float(np.nanmax(np.abs(half[k] - f32[k]))) for k in ("rmsf_nor", "sasa_mean", "corr", "ss"))
            assert 0 < worst < tolerance, (dtype, name, worst)


def test_a_run_of_another_dtype_is_recomputed_not_reused(tmp_path, fasta, models, capsys) -> None:
    dyn, _ = models
    out = tmp_path / "run"
    assert main(["predict", str(fasta), "--model", str(dyn), "-q", "-o", str(out), "--no-pairs"]) == 0
    before = _arrays(out, "a")
    capsys.readouterr()
    assert main(["predict", str(fasta), "--model", str(dyn), "-q", "-o", str(out), "--no-pairs",
                 "--dtype", "bfloat16"]) == 0
    assert "2 predicted, 0 already done" in capsys.readouterr().err  # the fingerprint records the dtype
    assert not np.array_equal(before["rmsf_nor"], _arrays(out, "a")["rmsf_nor"])


def test_embed_score_and_attention_run_in_half_precision(tmp_path, fasta, models) -> None:
    dyn, esm = models
    assert main(["embed", str(fasta), "--model", str(dyn), "-o", str(tmp_path / "e32.h5"), "-q"]) == 0
    assert main(["embed", str(fasta), "--model", str(dyn), "-o", str(tmp_path / "e16.h5"), "-q",
                 "--dtype", "float16"]) == 0
    from seqdance.inference.embedding_store import read_embeddings

    e32, e16 = read_embeddings(tmp_path / "e32.h5"), read_embeddings(tmp_path / "e16.h5")
    for name in SEQUENCES:
        assert e16[name].dtype == np.float32
        np.testing.assert_allclose(e16[name], e32[name], atol=0.05 * np.abs(e32[name]).max())
    scores = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"scan_{dtype}.csv"
        assert main(["score", "--model", str(dyn), "--esm2", str(esm), "--sequence", SEQUENCES["b"], "--saturation",
                     "-o", str(out), "-q", "--dtype", dtype, "--properties", "rmsf_nor", "sasa_mean"]) == 0
        scores[dtype] = pd.read_csv(out)
    assert list(scores["float32"]["mutant"]) == list(scores["bfloat16"]["mutant"])
    for column in ("score", "esm2_masked_marginal"):
        rho = scores["float32"][column].corr(scores["bfloat16"][column], method="spearman")
        assert rho > 0.8, (column, rho)


def test_dtype_is_a_usage_error_when_unknown_and_refused_for_fine_tuned_models(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["predict", "x.fasta", "-o", "out", "--dtype", "float64"])
    assert stop.value.code == 2 and "unknown dtype 'float64'" in capsys.readouterr().err
    from seqdance.devices import dtype_name, model_dtype

    assert [model_dtype(n) for n in ("float32", "fp32", "bf16", "float16", None)] == \
        [None, None, "bfloat16", "float16", None]
    assert dtype_name("torch.bfloat16") == "bfloat16"
